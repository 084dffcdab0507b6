//! Data protection impact assessments: triggers record `dpia.required` once, inside the
//! change that tripped them (a dataset with personal data registered, a high-tier release
//! touching personal data); an assessment is written (`dpia.draft`) and approved by someone
//! other than its author (`dpia.approve`). A release waits for its DPIA before promotion.

use crate::event::observed;
use crate::{Actor, Control, ControlError, Evidence, Recorded};
use custos_core::time::{format_rfc3339, now_ms};
use custos_core::Reason;
use custos_govern::comply::{dpia, CheckResult, Status};
use custos_store::{Change, Dpia, StoreError};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// What tripped a DPIA.
#[derive(Clone, Debug)]
pub(crate) struct Trigger {
    pub tenant: String,
    pub kind: &'static str,
    /// Recorded once per key.
    pub key: String,
    pub subject: String,
    pub release_id: Option<String>,
    pub details: Value,
}

fn view(d: &Dpia) -> Value {
    json!({"id": d.id, "tenant": d.tenant, "trigger": d.trigger_kind, "subject": d.subject,
           "release": d.release_id, "state": d.state,
           "document_sha256": d.document_sha256.as_ref().map(|h| format!("sha256:{h}"))})
}

fn resource(d: &Dpia) -> Value {
    json!({"type": "dpia", "name": d.id, "tenant": d.tenant, "trigger": d.trigger_kind,
           "subject": d.subject, "release": d.release_id})
}

impl Control {
    /// Records a trigger inside `c`: the DPIA row and its `dpia.required` event, unless the
    /// same trigger was recorded before.
    pub(crate) async fn dpia_trigger(
        &self,
        c: &mut Change,
        actor: &Actor,
        t: Trigger,
        reason: &Reason,
    ) -> Result<Option<String>, ControlError> {
        if c.dpia_by_trigger(&t.key).await?.is_some() {
            return Ok(None);
        }
        let now = now_ms();
        let d = Dpia {
            id: custos_core::id::new_id("dpia"),
            tenant: t.tenant,
            trigger_kind: t.kind.into(),
            trigger_key: t.key,
            subject: t.subject,
            release_id: t.release_id,
            details: t.details.to_string(),
            state: "required".into(),
            document: None,
            document_sha256: None,
            author: None,
            approved_by: None,
            approved_at: None,
            required_at: now,
            updated_at: now,
        };
        c.dpia_insert(&d).await?;
        let mut r = resource(&d);
        r["details"] = t.details;
        Ok(Some(observed(actor, "dpia.required", r, None, reason)))
    }

    /// Records what the gateway saw (personal data of a new type bound for a provider, a
    /// cross-border transfer) as a DPIA trigger, once per `key`; the new DPIA's id, or `None`
    /// when the trigger was recorded before.
    pub async fn record_dpia_sighting(
        &self,
        actor: &Actor,
        kind: &'static str,
        tenant: &str,
        key: &str,
        subject: &str,
        details: Value,
    ) -> Result<Option<String>, ControlError> {
        let mut c = self.store.begin_change().await?;
        let reason = Reason::default();
        let Some(e) = self
            .dpia_trigger(
                &mut c,
                actor,
                Trigger {
                    tenant: tenant.into(),
                    kind,
                    key: key.into(),
                    subject: subject.into(),
                    release_id: None,
                    details,
                },
                &reason,
            )
            .await?
        else {
            return Ok(None);
        };
        let id = c.dpia_by_trigger(key).await?.map(|d| d.id);
        Ok(self.commit(c, vec![e], id).await?.value)
    }

    /// Opens a DPIA no trigger asked for (a new processing someone wants assessed).
    pub async fn dpia_open(
        &self,
        actor: &Actor,
        tenant: &str,
        subject: &str,
        release_id: Option<&str>,
        reason: &Reason,
    ) -> Result<Recorded<Dpia>, ControlError> {
        self.authorize(actor, "dpia.manage", tenant, reason).await?;
        if subject.trim().is_empty() || subject.len() > 200 {
            return Err(ControlError::invalid(
                "the DPIA's subject is 1 to 200 characters",
            ));
        }
        let mut c = self.store.begin_change().await?;
        if let Some(r) = release_id {
            c.release_get(r)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("release {r:?}")))?;
        }
        let key = format!("manual:{}", custos_core::id::new_id("t"));
        let e = self
            .dpia_trigger(
                &mut c,
                actor,
                Trigger {
                    tenant: tenant.into(),
                    kind: "manual",
                    key: key.clone(),
                    subject: subject.trim().into(),
                    release_id: release_id.map(str::to_owned),
                    details: json!({"opened_by": actor.name()}),
                },
                reason,
            )
            .await?;
        let d = c
            .dpia_by_trigger(&key)
            .await?
            .ok_or_else(|| ControlError::invalid("the DPIA was not recorded"))?;
        self.commit(c, e.into_iter().collect(), d).await
    }

    /// Attaches the assessment's text (every Art. 35 section answered); the writer is its
    /// author, who cannot approve it.
    pub async fn dpia_draft(
        &self,
        actor: &Actor,
        id: &str,
        text: &str,
        reason: &Reason,
    ) -> Result<Recorded<Dpia>, ControlError> {
        let tenant = self.store.dpia(id).await?.tenant;
        let d = self
            .authorize(actor, "dpia.manage", &tenant, reason)
            .await?;
        let gaps = dpia::missing(text);
        if !gaps.is_empty() {
            return Err(ControlError::invalid(format!(
                "the assessment is incomplete: {} (`custos dpia template {id}` writes the sections to fill)",
                gaps.join("; ")
            )));
        }
        let mut c = self.store.begin_change().await?;
        let before = c
            .dpia_get(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("DPIA {id:?}")))?;
        if before.state == "approved" {
            return Err(ControlError::invalid(format!(
                "DPIA {id} is approved; a new assessment is a new DPIA (`custos dpia open`)"
            )));
        }
        let mut after = before.clone();
        after.state = "drafted".into();
        after.document = Some(text.to_owned());
        after.document_sha256 = Some(hex::encode(Sha256::digest(text.as_bytes())));
        after.author = Some(actor.name());
        after.updated_at = now_ms();
        c.dpia_update(&after, &before.state).await?;
        let e = self.event(
            actor,
            "dpia.manage",
            &d,
            Evidence {
                activity: "dpia.draft",
                resource: resource(&after),
                before: Some(view(&before)),
                after: Some(view(&after)),
            },
            reason,
        );
        self.commit(c, vec![e], after).await
    }

    /// Approves a drafted DPIA; never by its author.
    pub async fn dpia_approve(
        &self,
        actor: &Actor,
        id: &str,
        reason: &Reason,
    ) -> Result<Recorded<Dpia>, ControlError> {
        let tenant = self.store.dpia(id).await?.tenant;
        let d = self
            .authorize(actor, "dpia.approve", &tenant, reason)
            .await?;
        let mut c = self.store.begin_change().await?;
        let before = c
            .dpia_get(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("DPIA {id:?}")))?;
        match before.state.as_str() {
            "drafted" => {}
            "approved" => return Err(ControlError::invalid(format!("DPIA {id} is already approved"))),
            s => {
                return Err(ControlError::invalid(format!(
                    "DPIA {id} is {s}: attach the assessment first (`custos dpia new {id} --file dpia.md`)"
                )))
            }
        }
        if before.author.as_deref() == Some(actor.name().as_str()) {
            return Err(ControlError::invalid(format!(
                "{} wrote DPIA {id} and cannot approve it; someone else (a privacy officer) must",
                actor.name()
            )));
        }
        let mut after = before.clone();
        after.state = "approved".into();
        after.approved_by = Some(actor.name());
        after.approved_at = Some(now_ms());
        after.updated_at = now_ms();
        c.dpia_update(&after, "drafted").await?;
        let e = self.event(
            actor,
            "dpia.approve",
            &d,
            Evidence {
                activity: "dpia.approve",
                resource: resource(&after),
                before: Some(view(&before)),
                after: Some(view(&after)),
            },
            reason,
        );
        self.commit(c, vec![e], after).await
    }

    /// `dpia-approved`: every DPIA required by `as_of` is approved.
    pub(crate) async fn dpia_check(&self, as_of: i64) -> Result<CheckResult, ControlError> {
        let all: Vec<Dpia> = self
            .store
            .dpias()
            .await?
            .into_iter()
            .filter(|d| d.required_at <= as_of)
            .collect();
        let open: Vec<String> = all
            .iter()
            .filter(|d| d.state != "approved" || d.approved_at.is_some_and(|a| a > as_of))
            .map(|d| format!("{} ({}, {})", d.id, d.subject, d.state))
            .collect();
        let evidence = all
            .iter()
            .map(|d| json!({"dpia": d.id, "subject": d.subject, "trigger": d.trigger_kind, "state": d.state,
                            "required_at": format_rfc3339(d.required_at),
                            "approved_by": d.approved_by, "approved_at": d.approved_at.map(format_rfc3339),
                            "document_sha256": d.document_sha256}))
            .collect();
        Ok(if all.is_empty() {
            CheckResult::new(
                "dpia-approved",
                Status::NotCovered,
                "no DPIA has been required",
            )
        } else if open.is_empty() {
            CheckResult::new(
                "dpia-approved",
                Status::Pass,
                format!("{} DPIA(s), each approved", all.len()),
            )
        } else {
            CheckResult::new(
                "dpia-approved",
                Status::Fail,
                format!("not approved: {}", open.join(", ")),
            )
        }
        .with(evidence))
    }
}
