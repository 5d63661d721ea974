//! An authenticated request on its way through the gateway: who made it, its id, and the two
//! things every forwarded request needs, admission against limits and its usage event.

use crate::admission::{Admission, Ask, Stage};
use crate::error::GatewayError;
use crate::request::auth::Principal;
use crate::request_id::{new_request_id, RequestId};
use crate::state::AppState;
use tollgate_core::{MicroUsd, OrgId};
use tollgate_store::UsageEvent;

pub(crate) struct Call {
    pub state: AppState,
    pub principal: Principal,
    pub request_id: RequestId,
}

impl Call {
    /// The call of an authenticated request; its id is moved out of the request's extensions,
    /// where the connection put it.
    pub(crate) fn new(
        state: AppState,
        principal: Principal,
        extensions: &mut axum::http::Extensions,
    ) -> Call {
        let request_id = extensions
            .remove::<RequestId>()
            .unwrap_or_else(|| RequestId(new_request_id()));
        Call {
            state,
            principal,
            request_id,
        }
    }

    fn ask<'a>(&'a self, model: Option<(&'a str, &'a str)>) -> Ask<'a> {
        let key = &self.principal.key;
        Ask {
            org: key.org_id.as_str(),
            project: key.project_id().map(|p| p.as_str()),
            key: key.id.as_str(),
            model,
        }
    }

    /// A request is not taken while usage waits in the spool past its bound: it would go
    /// unrecorded if the process died.
    fn recordable(&self) -> Result<(), GatewayError> {
        if self.state.usage.backlogged() {
            return Err(GatewayError::MeteringBacklog);
        }
        Ok(())
    }

    /// Checks a request that names no model against every rate limit that applies, once.
    pub(crate) async fn admit(&self, subject: &str) -> Result<Admission, GatewayError> {
        self.recordable()?;
        let plan = self.state.limits.plan(&self.ask(None));
        if plan.is_empty() {
            return Ok(Admission::default());
        }
        self.state
            .limits
            .admit(plan, 0, MicroUsd::ZERO, subject)
            .await
    }

    /// Checks a request's head, before its body is read, against the limits that need neither
    /// (request rates and concurrency for every model); see [`Stage`]. Dropped without being
    /// joined (the request refused for its body, its model, or abandoned), it is refunded.
    pub(crate) async fn admit_head(&self, subject: &str) -> Result<Admission, GatewayError> {
        self.recordable()?;
        let plan = self.state.limits.plan_stage(&self.ask(None), Stage::Head);
        if plan.is_empty() {
            return Ok(Admission::default());
        }
        self.state
            .limits
            .admit(plan, 0, MicroUsd::ZERO, subject)
            .await
            .map(Admission::refunded_unless_joined)
    }

    /// Checks the request, its body read, against the limits and budgets its head left, and
    /// joins both admissions. `estimate` gives the prompt's tokens, the tokens to reserve and
    /// the most the request can cost; it is only worked out (the prompt counted) when a token
    /// limit or a budget applies, and the prompt's tokens are returned then. A refusal gives
    /// back what the head took, its request counts included.
    pub(crate) async fn admit_body<F>(
        &self,
        head: Admission,
        model: (&str, &str),
        subject: &str,
        estimate: impl FnOnce() -> F,
    ) -> Result<(Admission, Option<i64>), GatewayError>
    where
        F: std::future::Future<Output = (i64, u64, MicroUsd)>,
    {
        let plan = self
            .state
            .limits
            .plan_stage(&self.ask(Some(model)), Stage::Body);
        if plan.is_empty() {
            return Ok((head, None));
        }
        let (input, tokens, most) = if plan.needs_estimate() {
            let (input, tokens, most) = estimate().await;
            (Some(input), tokens, most)
        } else {
            (None, 0, MicroUsd::ZERO)
        };
        match self.state.limits.admit(plan, tokens, most, subject).await {
            Ok(admission) => Ok((admission.join(head), input)),
            Err(err) => {
                head.refund();
                Err(err)
            }
        }
    }

    /// The request's usage event, before anything is known of its answer.
    pub(crate) fn event(&self, endpoint: &str, requested: &str, served: &str) -> UsageEvent {
        let key = &self.principal.key;
        UsageEvent {
            request_id: self.request_id.0.clone(),
            org_id: OrgId::clone(&key.org_id),
            project_id: key
                .project_id()
                .cloned()
                .unwrap_or_else(|| tollgate_core::ProjectId::from_trusted(String::new())),
            key_id: key.id.clone(),
            model_requested: requested.to_owned(),
            model_served: served.to_owned(),
            endpoint: endpoint.to_owned(),
            input_tokens: 0,
            cached_input_tokens: 0,
            output_tokens: 0,
            reasoning_tokens: 0,
            cost: MicroUsd::ZERO,
            status: 0,
            latency_ms: 0,
            client_ip: self
                .principal
                .client_ip
                .map(tollgate_core::network::ip_text),
            created_at: self.state.clock.now(),
            objects: Vec::new(),
        }
    }
}
