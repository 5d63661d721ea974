//! The organization's users: adding one with a role, changing a role, removing one. The
//! organization always keeps an owner.

use crate::{Control, ControlError, Result};
use serde_json::json;
use tollgate_core::invite::normalize_email;
use tollgate_core::{KeyId, UserId};
use tollgate_store::{Actor, KeyOwner, Member, Organization, Role, User};

impl Control {
    /// Adds a user to the organization with a role. (Invitations, with the console's sign-in,
    /// will call this when one is accepted.)
    pub async fn add_member(
        &self,
        actor: &Actor,
        email: &str,
        name: &str,
        role: Role,
    ) -> Result<Member> {
        let org = self.organization().await?;
        let email = normalize_email(email).map_err(|e| ControlError::Invalid(e.to_string()))?;
        let now = self.clock.now();
        let user = User {
            id: UserId::generate(),
            email,
            name: name.trim().to_owned(),
            created_at: now,
        };
        let entry = self.audit_entry(
            &org,
            actor,
            "user.added",
            None,
            user.id.as_str(),
            json!({"email": user.email, "role": role.as_str()}),
        );
        self.store
            .add_member(&org.id, &user, None, role, &entry)
            .await?;
        Ok(Member {
            user,
            role,
            added_at: now,
        })
    }

    /// Changes a member's role; the organization's last owner stays one (`Conflict`).
    pub async fn set_member_role(&self, actor: &Actor, user: &str, role: Role) -> Result<Member> {
        let org = self.organization().await?;
        let member = self.member(user).await?;
        let entry = self.audit_entry(
            &org,
            actor,
            "user.updated",
            None,
            member.user.id.as_str(),
            json!({"changes_requested": {"role": role.as_str()}, "previous": {"role": member.role.as_str()}}),
        );
        self.store
            .set_member_role(&org.id, &member.user.id, role, &entry)
            .await?;
        Ok(Member { role, ..member })
    }

    /// Removes a member from the organization; never the last owner (`Conflict`). Keys made
    /// through the CLI and the admin API are the organization's and keep working.
    pub async fn remove_member(&self, actor: &Actor, user: &str) -> Result<Member> {
        let org = self.organization().await?;
        let member = self.member(user).await?;
        let entry = self.audit_entry(
            &org,
            actor,
            "user.deleted",
            None,
            member.user.id.as_str(),
            json!({"email": member.user.email, "role": member.role.as_str()}),
        );
        self.store
            .remove_member(&org.id, &member.user.id, &entry)
            .await?;
        Ok(member)
    }

    /// Renames the organization (1 to 200 characters).
    pub async fn rename_organization(&self, actor: &Actor, name: &str) -> Result<Organization> {
        let org = self.organization().await?;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(ControlError::Invalid(
                "the organization's name must be 1 to 200 characters, without control characters"
                    .into(),
            ));
        }
        let entry = self.audit_entry(
            &org,
            actor,
            "organization.updated",
            None,
            org.id.as_str(),
            json!({"changes_requested": {"name": name}, "previous": {"name": org.name}}),
        );
        self.store
            .rename_organization(&org.id, name, &entry)
            .await?;
        Ok(Organization {
            name: name.to_owned(),
            ..org
        })
    }

    /// One member of the organization, by user id.
    pub async fn member(&self, user: &str) -> Result<Member> {
        self.members()
            .await?
            .into_iter()
            .find(|m| m.user.id.as_str() == user)
            .ok_or_else(|| {
                tollgate_store::StoreError::NotFound {
                    entity: "user",
                    id: user.to_owned(),
                }
                .into()
            })
    }

    /// The person an action is taken for, who is recorded as the owner of what it makes: a
    /// console user, or the user who owns the admin key used; for the CLI's local operator and
    /// the system (and anyone no longer a member), the organization's first owner.
    pub(crate) async fn acting_user(&self, org: &Organization, actor: &Actor) -> Result<User> {
        let candidate = match actor.kind.as_str() {
            "user" => UserId::parse(&actor.id).ok(),
            "api_key" => match KeyId::parse(&actor.id) {
                Ok(id) => match self.store.key(&org.id, &id).await {
                    Ok(key) => match key.owner {
                        KeyOwner::User(user) => Some(user),
                        KeyOwner::ServiceAccount(_) => None,
                    },
                    Err(tollgate_store::StoreError::NotFound { .. }) => None,
                    Err(err) => return Err(err.into()),
                },
                Err(_) => None,
            },
            _ => None,
        };
        if let Some(id) = candidate {
            let members = self.store.members(&org.id).await?;
            if let Some(member) = members.into_iter().find(|m| m.user.id == id) {
                return Ok(member.user);
            }
        }
        Ok(self.store.organization_owner(&org.id).await?)
    }
}
