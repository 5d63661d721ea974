//! Whose spend the spend-limit and spend-alert endpoints are about: the organization, or one
//! project by id (an archived project is read, never changed).

use crate::error::AdminError;
use crate::AdminState;
use tollgate_control::HolderRequest;
use tollgate_store::{Project, ProjectStatus};

/// Tollgate keeps money in micro-dollars; OpenAI's spend endpoints speak cents.
pub const MICRO_USD_PER_CENT: i64 = 10_000;

pub struct Spender {
    pub holder: HolderRequest,
    /// Set for an archived project.
    archived: Option<Project>,
}

impl Spender {
    pub fn organization() -> Spender {
        Spender {
            holder: HolderRequest::Organization,
            archived: None,
        }
    }

    pub async fn project(state: &AdminState, id: &str) -> Result<Spender, AdminError> {
        let project = crate::projects::project(state, id).await?;
        Ok(Spender {
            holder: HolderRequest::Project(project.id.as_str().to_owned()),
            archived: (project.status == ProjectStatus::Archived).then_some(project),
        })
    }

    pub fn is_project(&self) -> bool {
        matches!(self.holder, HolderRequest::Project(_))
    }

    /// The organization's or the project's name of an object.
    pub fn object(&self, organization: &'static str, project: &'static str) -> &'static str {
        if self.is_project() {
            project
        } else {
            organization
        }
    }

    /// A change to an archived project is refused (409).
    pub fn refuse_archived(&self) -> Result<(), AdminError> {
        match &self.archived {
            Some(project) => crate::projects::refuse_archived(project),
            None => Ok(()),
        }
    }
}
