//! Invitations: an owner invites an address with a role (and projects); the invitee follows a
//! one-time link and either makes an account (name and password) or, if the address has one
//! already, proves it with its password. Tollgate sends no e-mail: the link is shown once to
//! whoever made the invite, who passes it on.

use crate::{Control, ControlError, Result};
use serde_json::json;
use tollgate_core::invite::{normalize_email, InviteStatus, InviteToken, INVITE_LIFETIME_SECS};
use tollgate_core::password::{check_new_password, hash_password, verify_password};
use tollgate_core::{InviteId, UserId};
use tollgate_store::{Actor, Invite, InvitedProject, Member, ProjectRole, Role, StoreError, User};

/// A new invite and the token of its link (shown once, never stored).
#[derive(Debug)]
pub struct CreatedInvite {
    pub invite: Invite,
    pub token: InviteToken,
}

/// How the invitee answers an invite link.
#[derive(Debug, Clone)]
pub struct Acceptance<'a> {
    pub token: &'a str,
    /// A new account's name (ignored for an address that has an account).
    pub name: &'a str,
    /// A new account's password, or an existing account's.
    pub password: &'a str,
}

fn invite_not_found(id: &str) -> ControlError {
    StoreError::NotFound {
        entity: "invite",
        id: id.to_owned(),
    }
    .into()
}

impl Control {
    /// Invites `email` to the organization with `role`. `projects`: the projects (ids or names)
    /// the invitee joins on accepting; `None` means the default project as a member (OpenAI's
    /// legacy behaviour), an empty list none.
    pub async fn invite(
        &self,
        actor: &Actor,
        email: &str,
        role: Role,
        projects: Option<&[(String, ProjectRole)]>,
    ) -> Result<CreatedInvite> {
        let org = self.organization().await?;
        let email = normalize_email(email).map_err(|e| ControlError::Invalid(e.to_string()))?;
        let projects = match projects {
            None => vec![InvitedProject {
                id: self.store.default_project(&org.id).await?.id,
                role: ProjectRole::Member,
            }],
            Some(list) => {
                let mut resolved: Vec<InvitedProject> = Vec::with_capacity(list.len());
                for (project, role) in list {
                    let project = self.active_project(project).await?;
                    if resolved.iter().any(|p| p.id == project.id) {
                        return Err(ControlError::Invalid(format!(
                            "project {} is named twice",
                            project.id
                        )));
                    }
                    resolved.push(InvitedProject {
                        id: project.id,
                        role: *role,
                    });
                }
                resolved
            }
        };
        let now = self.clock.now();
        let invite = Invite {
            id: InviteId::generate(),
            org_id: org.id.clone(),
            email,
            role,
            projects,
            created_by: actor.label(),
            created_at: now,
            expires_at: now.plus_seconds(INVITE_LIFETIME_SECS),
            accepted_at: None,
            user_id: None,
        };
        let token = InviteToken::generate();
        let entry = self.audit_entry(
            &org,
            actor,
            "invite.sent",
            None,
            invite.id.as_str(),
            json!({"email": invite.email, "role": role.as_str()}),
        );
        self.store
            .create_invite(&invite, &token.hash(&self.hasher), &entry)
            .await?;
        Ok(CreatedInvite { invite, token })
    }

    /// The organization's invites, oldest first.
    pub async fn invites(&self) -> Result<Vec<Invite>> {
        let org = self.organization().await?;
        Ok(self.store.invites(&org.id).await?)
    }

    /// One invite of the organization by id (`NotFound` for anything else).
    pub async fn invite_by_id(&self, id: &str) -> Result<Invite> {
        let org = self.organization().await?;
        let parsed = InviteId::parse(id).map_err(|_| invite_not_found(id))?;
        Ok(self.store.invite(&org.id, &parsed).await?)
    }

    /// Withdraws an invite that was not accepted; its link stops working.
    pub async fn delete_invite(&self, actor: &Actor, id: &str) -> Result<Invite> {
        let org = self.organization().await?;
        let invite = self.invite_by_id(id).await?;
        let entry = self.audit_entry(
            &org,
            actor,
            "invite.deleted",
            None,
            invite.id.as_str(),
            json!({"email": invite.email}),
        );
        self.store
            .delete_invite(&org.id, &invite.id, &entry)
            .await?;
        Ok(invite)
    }

    /// Accepts an invite from its link. A new address gets an account with the name and
    /// password given; an address with an account must give that account's password. The link
    /// works once, and not after its expiry or withdrawal.
    pub async fn accept_invite(&self, acceptance: Acceptance<'_>) -> Result<Member> {
        let unusable = || {
            ControlError::Conflict(
                "this invite link is not valid: it was used, withdrawn or has expired".into(),
            )
        };
        let token = InviteToken::parse(acceptance.token).ok_or_else(unusable)?;
        let invite = self
            .store
            .invite_by_token(&token.hash(&self.hasher))
            .await?
            .ok_or_else(unusable)?;
        let now = self.clock.now();
        if invite.status(now) != InviteStatus::Pending {
            return Err(unusable());
        }
        let org = self.organization().await?;
        if org.id != invite.org_id {
            return Err(unusable());
        }
        let password = acceptance.password.to_owned();
        let (user, new_hash) = match self.store.user_by_email(&invite.email).await? {
            Some(user) => {
                let stored = self.store.password_hash(&user.email).await?;
                let matches = match stored {
                    Some(stored) => {
                        crate::accounts::password_work(move || verify_password(&password, &stored))
                            .await?
                    }
                    None => false,
                };
                if !matches {
                    let entry = self.audit_entry(
                        &org,
                        &Actor {
                            kind: "user".into(),
                            id: user.id.as_str().to_owned(),
                        },
                        "login.failed",
                        None,
                        user.id.as_str(),
                        json!({"error_code": "invalid_credentials", "while": "accepting an invite", "invite_id": invite.id}),
                    );
                    self.store.record_audit(&entry).await?;
                    return Err(ControlError::Invalid(format!(
                        "{} already has an account: give its password to accept",
                        user.email
                    )));
                }
                (user, None)
            }
            None => {
                let name = acceptance.name.trim();
                if name.is_empty() || name.chars().count() > 200 {
                    return Err(ControlError::Invalid(
                        "give your name (1 to 200 characters)".into(),
                    ));
                }
                check_new_password(&password).map_err(|e| ControlError::Invalid(e.to_string()))?;
                let hash = crate::accounts::password_work(move || hash_password(&password))
                    .await?
                    .map_err(|e| ControlError::Internal(e.to_string()))?;
                let user = User {
                    id: UserId::generate(),
                    email: invite.email.clone(),
                    name: name.to_owned(),
                    created_at: now,
                };
                (user, Some(hash))
            }
        };
        let actor = Actor {
            kind: "user".into(),
            id: user.id.as_str().to_owned(),
        };
        let entries = [
            self.audit_entry(
                &org,
                &actor,
                "invite.accepted",
                None,
                invite.id.as_str(),
                json!({}),
            ),
            self.audit_entry(
                &org,
                &actor,
                "user.added",
                None,
                user.id.as_str(),
                json!({"email": user.email, "role": invite.role.as_str()}),
            ),
        ];
        self.store
            .accept_invite(&invite, &user, new_hash.as_deref(), now, &entries)
            .await?;
        Ok(Member {
            user,
            role: invite.role,
            added_at: now,
        })
    }
}
