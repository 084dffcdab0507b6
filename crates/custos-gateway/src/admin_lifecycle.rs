//! The admin API's data lifecycle: lineage (read a node's sources and what stands on it,
//! record an edge), legal holds (list, place, release) and erasures (run one for a data
//! subject, list them, fetch a signed receipt). Deployment-wide, not per tenant; thin over
//! `custos-control`, which authorizes and ledgers every change.

use super::*;
use custos_govern::lifecycle::erase::Subject;

/// Authorizes a deployment-wide read; a denial is recorded like a tenant read's.
async fn global_read(c: &Ctx, action: &'static str) -> Option<Response> {
    let d = match c.s.control.decide(&c.actor, action, custos_control::GLOBAL) {
        Ok(d) => d,
        Err(e) => return Some(control_problem(e)),
    };
    if d.allowed {
        return None;
    }
    let event = custos_control::denial(
        &c.actor,
        action,
        custos_control::GLOBAL,
        &d,
        &Reason::default(),
    );
    c.s.audit.append(&event).await;
    Some(
        Problem::new(
            ProblemKind::AccessDenied,
            format!("{action} is denied: {}", d.reason()),
        )
        .into_response(),
    )
}

/// A lineage edge.
#[derive(serde::Serialize, ToSchema)]
pub struct EdgeOut {
    pub from: String,
    pub to: String,
    /// recorded, trained (a model's training dataset digest) or serves (a release's part).
    pub how: String,
    pub job: Option<String>,
}

#[derive(serde::Serialize, ToSchema)]
pub struct LineageOut {
    pub node: String,
    /// The edges into the node.
    pub sources: Vec<EdgeOut>,
    /// Everything downstream: derived datasets, models trained on them, releases serving them.
    pub downstream: Vec<EdgeOut>,
}

/// Which node.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct NodeQuery {
    /// `dataset:NAME@TAG`, `model:NAME@VERSION` or `release:ID`.
    node: String,
}

fn edge(e: custos_govern::lifecycle::lineage::Edge) -> EdgeOut {
    EdgeOut {
        from: e.from,
        to: e.to,
        how: e.how,
        job: e.job,
    }
}

/// A node's sources and everything downstream of it.
#[utoipa::path(
    tag = "admin",
    get,
    path = "/admin/lineage",
    params(NodeQuery),
    responses(
        (status = 200, body = Envelope<LineageOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn lineage(c: Ctx, AdminQuery(q): AdminQuery<NodeQuery>) -> Response {
    if let Some(r) = global_read(&c, "lineage.read").await {
        return r;
    }
    if let Err(e) = custos_govern::lifecycle::lineage::parse_node(&q.node) {
        return Problem::new(ProblemKind::InvalidRequest, e).into_response();
    }
    match c.s.control.lineage_graph().await {
        Ok(g) => one(
            c.version,
            StatusCode::OK,
            wire(LineageOut {
                sources: g.sources(&q.node).into_iter().map(edge).collect(),
                downstream: g.impact(&q.node).into_iter().map(edge).collect(),
                node: q.node,
            }),
        ),
        Err(e) => control_problem(e),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EdgeBody {
    /// The source node (`dataset:NAME@TAG`, `model:NAME@VERSION`, `release:ID`).
    from: String,
    /// The node derived from (or trained on) it.
    to: String,
    /// The job that made `to` (script and commit, pipeline run).
    job: Option<String>,
    why: Option<String>,
    ticket: Option<String>,
}

/// Record that one registered node was derived from another.
#[utoipa::path(
    tag = "admin",
    post,
    path = "/admin/lineage",
    request_body(content = EdgeBody, content_type = "application/json"),
    responses(
        (status = 201, body = Envelope<EdgeOut>, content_type = "application/vnd.custos.v2+json", description = "recorded"),
        Errors
    )
)]
pub(crate) async fn add_lineage(c: Ctx, bytes: Bytes) -> Response {
    let b: EdgeBody = tri!(body(&bytes, None));
    let r = tri!(reason(&b.why, &b.ticket));
    match c
        .s
        .control
        .add_lineage(&c.actor, &b.from, &b.to, b.job, &r)
        .await
    {
        Ok(done) => one(
            c.version,
            StatusCode::CREATED,
            wire(EdgeOut {
                from: done.value.src,
                to: done.value.dst,
                how: "recorded".into(),
                job: done.value.job,
            }),
        ),
        Err(e) => control_problem(e),
    }
}

#[derive(serde::Serialize, ToSchema)]
pub struct HoldOut {
    pub id: String,
    /// `dataset:NAME[@TAG]`, `location:PREFIX`, or `subject` (a subject is kept as a digest and
    /// never shown).
    pub target: String,
    pub reason: String,
    pub placed_by: String,
    pub placed_at: String,
    pub released_by: Option<String>,
    pub released_at: Option<String>,
}

fn hold_json(h: &custos_store::Hold) -> Value {
    wire(HoldOut {
        id: h.id.clone(),
        target: if h.target.starts_with("subject:") {
            "subject".into()
        } else {
            h.target.clone()
        },
        reason: h.reason.clone(),
        placed_by: h.placed_by.clone(),
        placed_at: format_rfc3339(h.placed_at),
        released_by: h.released_by.clone(),
        released_at: h.released_at.map(format_rfc3339),
    })
}

/// Which holds.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HoldsQuery {
    /// Released holds too.
    all: Option<bool>,
}

/// Legal holds in force (with `all=true`, released ones too), newest first.
#[utoipa::path(
    tag = "admin",
    get,
    path = "/admin/holds",
    params(PageQuery, HoldsQuery),
    responses(
        (status = 200, body = Page<HoldOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn holds(
    c: Ctx,
    AdminQuery(page): AdminQuery<PageQuery>,
    AdminQuery(q): AdminQuery<HoldsQuery>,
) -> Response {
    if let Some(r) = global_read(&c, "lineage.read").await {
        return r;
    }
    match c.s.store.holds(!q.all.unwrap_or(false)).await {
        Ok(h) => list(c.version, &page, h.iter().map(hold_json).collect()),
        Err(e) => store_problem(e),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HoldBody {
    /// `dataset:NAME[@TAG]`, `location:PREFIX` or `subject:KIND:VALUE`
    /// (`subject:email:jane@example.com`).
    target: String,
    /// Required: the matter the hold is for.
    why: Option<String>,
    ticket: Option<String>,
}

/// Place a legal hold: erasures and lifecycle actions on what it covers are refused.
#[utoipa::path(
    tag = "admin",
    post,
    path = "/admin/holds",
    request_body(content = HoldBody, content_type = "application/json"),
    responses(
        (status = 201, body = Envelope<HoldOut>, content_type = "application/vnd.custos.v2+json", description = "placed"),
        Errors
    )
)]
pub(crate) async fn place_hold(c: Ctx, bytes: Bytes) -> Response {
    let b: HoldBody = tri!(body(&bytes, None));
    let r = tri!(reason(&b.why, &b.ticket));
    match c.s.control.place_hold(&c.actor, &b.target, &r).await {
        Ok(done) => one(c.version, StatusCode::CREATED, hold_json(&done.value)),
        Err(e) => control_problem(e),
    }
}

/// Release a legal hold (`why` required).
#[utoipa::path(
    tag = "admin",
    post,
    path = "/admin/holds/{id}/release",
    params(("id" = String, Path, description = "the hold id")),
    request_body(content = ReasonBody, content_type = "application/json"),
    responses(
        (status = 200, body = Envelope<HoldOut>, content_type = "application/vnd.custos.v2+json", description = "released"),
        Errors
    )
)]
pub(crate) async fn release_hold(
    c: Ctx,
    AdminPath(id): AdminPath<String>,
    bytes: Bytes,
) -> Response {
    let b: ReasonBody = tri!(body(&bytes, None));
    let r = tri!(reason(&b.why, &b.ticket));
    match c.s.control.release_hold(&c.actor, &id, &r).await {
        Ok(_) => match c.s.store.holds(false).await {
            Ok(all) => match all.iter().find(|h| h.id == id) {
                Some(h) => one(c.version, StatusCode::OK, hold_json(h)),
                None => store_problem(StoreError::NotFound(format!("hold {id:?}"))),
            },
            Err(e) => store_problem(e),
        },
        Err(e) => control_problem(e),
    }
}

#[derive(serde::Serialize, ToSchema)]
pub struct ErasureOut {
    pub id: String,
    /// open, done or partial (something was kept: see the receipt's `not_erased`).
    pub state: String,
    /// The subject as a salted digest.
    pub subject: String,
    pub requested_by: String,
    pub requested_at: String,
    pub due_at: String,
    pub overdue: bool,
    pub finished_at: Option<String>,
    pub receipt_digest: Option<String>,
    /// The receipt's body (the signed receipt: `GET /admin/erasures/{id}/receipt`).
    #[schema(value_type = Option<Object>)]
    pub receipt: Option<Value>,
}

fn erasure_json(e: &custos_store::Erasure) -> Value {
    let now = custos_core::time::now_ms();
    wire(ErasureOut {
        id: e.id.clone(),
        state: e.state.clone(),
        subject: e.subject_digest.clone(),
        requested_by: e.requested_by.clone(),
        requested_at: format_rfc3339(e.requested_at),
        due_at: format_rfc3339(e.due_at),
        overdue: e.state == "open" && now > e.due_at,
        finished_at: e.finished_at.map(format_rfc3339),
        receipt_digest: e.receipt_digest.clone(),
        receipt: e
            .receipt
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok()),
    })
}

/// Erasure requests, newest first.
#[utoipa::path(
    tag = "admin",
    get,
    path = "/admin/erasures",
    params(PageQuery),
    responses(
        (status = 200, body = Page<ErasureOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn erasures(c: Ctx, AdminQuery(page): AdminQuery<PageQuery>) -> Response {
    if let Some(r) = global_read(&c, "erasure.run").await {
        return r;
    }
    match c.s.store.erasures().await {
        Ok(all) => list(c.version, &page, all.iter().map(erasure_json).collect()),
        Err(e) => store_problem(e),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EraseBody {
    /// Every identifier of the one person: `email:ADDRESS`, `phone:NUMBER`, `id:VALUE`,
    /// `text:VALUE`.
    subjects: Vec<String>,
    /// Only these datasets (`NAME@TAG`) and what lineage derives from them; default: every
    /// registered dataset.
    #[serde(default)]
    datasets: Vec<String>,
    /// Keep the subject's records with their values replaced instead of leaving them out.
    #[serde(default)]
    pseudonymize: bool,
    /// Required: the request it answers (a DSR ticket).
    why: Option<String>,
    ticket: Option<String>,
}

/// The most identifiers one erasure names.
const MAX_SUBJECTS: usize = 64;

/// Erase a data subject: the registered datasets this gateway can reach rewritten without
/// them (new versions registered), models trained on affected data flagged, their identity
/// in the ledger shredded, their end-user ids cleared. Answers when done, with the receipt's
/// body; the signed receipt follows once a checkpoint covers it.
#[utoipa::path(
    tag = "admin",
    post,
    path = "/admin/erasures",
    request_body(content = EraseBody, content_type = "application/json"),
    responses(
        (status = 201, body = Envelope<ErasureOut>, content_type = "application/vnd.custos.v2+json", description = "erased (state partial when a hold or reach kept something)"),
        Errors
    )
)]
pub(crate) async fn erase(c: Ctx, bytes: Bytes) -> Response {
    let b: EraseBody = tri!(body(&bytes, None));
    let r = tri!(reason(&b.why, &b.ticket));
    if b.subjects.is_empty() || b.subjects.len() > MAX_SUBJECTS {
        return Problem::new(
            ProblemKind::InvalidRequest,
            format!("`subjects` names 1 to {MAX_SUBJECTS} identifiers of the person, e.g. [\"email:jane@example.com\"]"),
        )
        .into_response();
    }
    let mut subjects = Vec::with_capacity(b.subjects.len());
    for (i, s) in b.subjects.iter().enumerate() {
        match Subject::parse(s) {
            Ok(x) => subjects.push(x),
            Err(e) => {
                return Problem::new(ProblemKind::InvalidRequest, format!("`subjects[{i}]`: {e}"))
                    .into_response()
            }
        }
    }
    let spec = custos_control::EraseSpec {
        subjects,
        datasets: b.datasets,
        pseudonymize: b.pseudonymize,
        extra_objects: Vec::new(),
        stored_responses_ttl: c.s.config.idempotency.ttl.to_string(),
    };
    match c.s.control.erase(&c.actor, &spec, &r, &|_| {}).await {
        Ok(done) => {
            c.s.audit.sealer().forget();
            one(c.version, StatusCode::CREATED, erasure_json(&done.request))
        }
        Err(e) => control_problem(e),
    }
}

/// The signed erasure receipt (`custos erase verify-receipt` checks it offline). 409 until a
/// signed checkpoint covers its event.
#[utoipa::path(
    tag = "admin",
    get,
    path = "/admin/erasures/{id}/receipt",
    params(("id" = String, Path, description = "the erasure id")),
    responses(
        (status = 200, body = Envelope<Object>, content_type = "application/vnd.custos.v2+json", description = "the receipt"),
        Errors
    )
)]
pub(crate) async fn erasure_receipt(c: Ctx, AdminPath(id): AdminPath<String>) -> Response {
    if let Some(r) = global_read(&c, "erasure.run").await {
        return r;
    }
    match c.s.control.erasure_receipt(&id).await {
        Ok(p) => one(c.version, StatusCode::OK, p),
        Err(ControlError::Invalid(m)) => Problem::new(ProblemKind::Conflict, m).into_response(),
        Err(e) => control_problem(e),
    }
}
