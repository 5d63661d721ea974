//! The organization's users: adding one with a role, changing a role, removing one. The
//! organization always keeps an owner.

use crate::{Control, ControlError, Result};
use serde_json::json;
use tollgate_core::UserId;
use tollgate_store::{Actor, Member, Role, User};

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
        let email = email.trim();
        if !email.contains('@') || email.len() > 254 {
            return Err(ControlError::Invalid(format!(
                "`{email}` is not an e-mail address"
            )));
        }
        let now = self.clock.now();
        let user = User {
            id: UserId::generate(),
            email: email.to_owned(),
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
}
