//! A project's users (OpenAI's project users): organization members added to a project with a
//! project role, owner or member. Changes are refused on archived projects.

use crate::{Control, ControlError, Result};
use serde_json::json;
use tollgate_store::{Actor, Member, Project, ProjectMember, ProjectRole, StoreError};

fn not_in_project(project: &Project, user: &str) -> ControlError {
    StoreError::NotFound {
        entity: "user",
        id: format!("{user} in project {}", project.id),
    }
    .into()
}

impl Control {
    /// A project's users, in the order they were added.
    pub async fn project_members(&self, project: &str) -> Result<(Project, Vec<ProjectMember>)> {
        let project = self.project(project).await?;
        let members = self.store.project_members(&project.id).await?;
        Ok((project, members))
    }

    /// One user of a project, by user id.
    pub async fn project_member(&self, project: &str, user: &str) -> Result<ProjectMember> {
        let (project, members) = self.project_members(project).await?;
        members
            .into_iter()
            .find(|m| m.user.id.as_str() == user)
            .ok_or_else(|| not_in_project(&project, user))
    }

    /// Adds an organization member (by user id or e-mail) to an active project. Someone who is
    /// not a member of the organization is refused: invite them first.
    pub async fn add_project_member(
        &self,
        actor: &Actor,
        project: &str,
        user: &str,
        role: ProjectRole,
    ) -> Result<ProjectMember> {
        let org = self.organization().await?;
        let project = self.active_project(project).await?;
        let member: Member = match self.member_by_id_or_email(user).await {
            Ok(member) => member,
            Err(err) if err.class() == crate::ErrorClass::NotFound => {
                return Err(ControlError::Invalid(format!(
                    "{user} is not a user of this organization; invite them first"
                )))
            }
            Err(err) => return Err(err),
        };
        let now = self.clock.now();
        let entry = self.audit_entry(
            &org,
            actor,
            "user.added",
            Some(&project.id),
            member.user.id.as_str(),
            json!({"email": member.user.email, "project_role": role.as_str()}),
        );
        self.store
            .add_project_member(&project.id, &member.user.id, role, now, &entry)
            .await?;
        Ok(ProjectMember {
            user: member.user,
            role,
            added_at: now,
        })
    }

    /// Changes a project user's role.
    pub async fn set_project_member_role(
        &self,
        actor: &Actor,
        project: &str,
        user: &str,
        role: ProjectRole,
    ) -> Result<ProjectMember> {
        let org = self.organization().await?;
        let member = self.project_member(project, user).await?;
        let project = self.active_project(project).await?;
        let entry = self.audit_entry(
            &org,
            actor,
            "user.updated",
            Some(&project.id),
            member.user.id.as_str(),
            json!({"changes_requested": {"project_role": role.as_str()}, "previous": {"project_role": member.role.as_str()}}),
        );
        self.store
            .set_project_member_role(&project.id, &member.user.id, role, &entry)
            .await?;
        Ok(ProjectMember { role, ..member })
    }

    /// Removes a user from a project; they stay in the organization.
    pub async fn remove_project_member(
        &self,
        actor: &Actor,
        project: &str,
        user: &str,
    ) -> Result<ProjectMember> {
        let org = self.organization().await?;
        let member = self.project_member(project, user).await?;
        let project = self.active_project(project).await?;
        let entry = self.audit_entry(
            &org,
            actor,
            "user.deleted",
            Some(&project.id),
            member.user.id.as_str(),
            json!({"email": member.user.email, "project_role": member.role.as_str()}),
        );
        self.store
            .remove_project_member(&project.id, &member.user.id, &entry)
            .await?;
        Ok(member)
    }
}
