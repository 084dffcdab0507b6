//! The model registry's changes: register a version, attach its signature, approve, promote,
//! retire, attest. Each checks the life cycle and what it attaches (a signature must verify
//! and cover exactly the registered files; provenance must name the registered digest)
//! before it writes the change, its history row and its ledger event together.

use crate::{Actor, ActorKind, Control, ControlError, Evidence, Recorded, GLOBAL};
use custos_core::time::now_ms;
use custos_core::Reason;
use custos_govern::models::bundle::Bundle;
use custos_govern::models::dsse::Envelope;
use custos_govern::models::keys::PublicKey;
use custos_govern::models::manifest::Manifest;
use custos_govern::models::provenance::Provenance;
use custos_govern::models::registry::{self, Kind, Registration, State};
use custos_store::{ModelHistory, ModelVersion, StoreError};
use serde_json::{json, Value};

/// A model card's text with the DSSE envelope that signs it and the key that verifies it.
#[derive(Clone, Copy, Debug)]
pub struct SignedCard<'a> {
    pub text: &'a str,
    pub envelope: &'a Envelope,
    pub key: &'a PublicKey,
}

/// A version to register.
#[derive(Clone, Debug)]
pub struct NewModel {
    pub name: String,
    pub version: String,
    pub kind: Kind,
    /// The manifest digest of the weights (none for a remote model).
    pub manifest_digest: Option<String>,
    pub registration: Registration,
}

fn resource(m: &ModelVersion) -> Value {
    json!({"type": "model", "name": format!("{}@{}", m.name, m.version),
           "digest": m.manifest_digest.as_ref().map(|d| format!("sha256:{d}"))})
}

fn state(m: &ModelVersion) -> Value {
    json!({"name": m.name, "version": m.version, "kind": m.kind, "state": m.state,
           "manifest_digest": m.manifest_digest, "signer": m.signer,
           "card_digest": m.card_digest,
           "attestations": serde_json::from_str::<Value>(&m.attestations).unwrap_or(Value::Null),
           "registration": serde_json::from_str::<Value>(&m.registration).unwrap_or(Value::Null)})
}

fn parse_kind(m: &ModelVersion) -> Kind {
    if m.kind == "remote" {
        Kind::Remote
    } else {
        Kind::Weights
    }
}

/// What a registered version's files are, as a manifest to compare a signature against.
fn registered_names(m: &ModelVersion) -> Result<Vec<(String, String)>, ControlError> {
    let r: Registration = serde_json::from_str(&m.registration).map_err(|e| {
        ControlError::invalid(format!(
            "stored registration of {}@{}: {e}",
            m.name, m.version
        ))
    })?;
    let mut files: Vec<(String, String)> =
        r.files.into_iter().map(|f| (f.name, f.sha256)).collect();
    files.sort();
    Ok(files)
}

impl Control {
    async fn model_change(
        &self,
        actor: &Actor,
        (action, activity): (&'static str, &'static str),
        name: &str,
        version: &str,
        reason: &Reason,
        apply: impl FnOnce(&mut ModelVersion) -> Result<(), ControlError>,
    ) -> Result<Recorded<ModelVersion>, ControlError> {
        let d = self.authorize(actor, action, GLOBAL, reason).await?;
        let mut c = self.store.begin_change().await?;
        let before = c
            .model_get(name, version)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("model {name}@{version}")))?;
        let mut after = before.clone();
        apply(&mut after)?;
        after.updated_at = now_ms();
        c.model_update(&after, &before.state).await?;
        let mut res = resource(&after);
        if activity == "model.promote" || activity == "model.card" {
            // The promotion record names the card it promoted with.
            res["card_digest"] = json!(after.card_digest.as_ref().map(|d| format!("sha256:{d}")));
        }
        let e = self.event(
            actor,
            action,
            &d,
            Evidence {
                activity,
                resource: res,
                before: Some(state(&before)),
                after: Some(state(&after)),
            },
            reason,
        );
        let e = crate::seal::seal_in(&mut c, e).await?;
        let ledger = c.append_events(&[e]).await?;
        c.model_history_insert(&ModelHistory {
            name: after.name.clone(),
            version: after.version.clone(),
            seq: 0,
            at: after.updated_at,
            activity: activity.into(),
            from_state: Some(before.state.clone()),
            to_state: after.state.clone(),
            actor: actor.name(),
            why: reason.why.clone(),
            ticket: reason.ticket.clone(),
            ledger_index: ledger.start as i64,
        })
        .await?;
        c.commit().await?;
        Ok(Recorded {
            value: after,
            ledger,
        })
    }

    fn step(m: &mut ModelVersion, next: State) -> Result<(), ControlError> {
        let now = State::parse(&m.state).ok_or_else(|| {
            ControlError::invalid(format!(
                "stored state {:?} of {}@{}",
                m.state, m.name, m.version
            ))
        })?;
        if let Some(why) = now.refuses(next, parse_kind(m)) {
            return Err(ControlError::invalid(format!(
                "{}@{} cannot become {}: {why}",
                m.name,
                m.version,
                next.as_str()
            )));
        }
        m.state = next.as_str().into();
        Ok(())
    }

    /// Registers a model version. Versions are immutable: registering one twice is refused.
    pub async fn register_model(
        &self,
        actor: &Actor,
        model: NewModel,
        reason: &Reason,
    ) -> Result<Recorded<ModelVersion>, ControlError> {
        let d = self
            .authorize(actor, "models.register", GLOBAL, reason)
            .await?;
        registry::check_name("model name", &model.name).map_err(ControlError::Invalid)?;
        registry::check_name("version", &model.version).map_err(ControlError::Invalid)?;
        match model.kind {
            Kind::Weights
                if model.manifest_digest.is_none() || model.registration.files.is_empty() =>
            {
                return Err(ControlError::invalid(
                    "a model with weights registers its files and manifest digest",
                ))
            }
            Kind::Remote
                if model.registration.provider.is_none()
                    || model.registration.model_id.is_none() =>
            {
                return Err(ControlError::invalid(
                    "a remote model names its provider and model id",
                ))
            }
            _ => {}
        }
        let registration = serde_json::to_string(&model.registration)
            .map_err(|e| ControlError::invalid(format!("cannot encode the registration: {e}")))?;
        let now = now_ms();
        let m = ModelVersion {
            name: model.name,
            version: model.version,
            kind: match model.kind {
                Kind::Weights => "weights",
                Kind::Remote => "remote",
            }
            .into(),
            state: State::Registered.as_str().into(),
            manifest_digest: model.manifest_digest,
            registration,
            signature: None,
            signer: None,
            card: None,
            card_digest: None,
            card_signature: None,
            attestations: "[]".into(),
            registered_by: actor.name(),
            created_at: now,
            updated_at: now,
        };
        let mut c = self.store.begin_change().await?;
        c.model_insert(&m).await?;
        let e = self.event(
            actor,
            "models.register",
            &d,
            Evidence {
                activity: "model.register",
                resource: resource(&m),
                before: None,
                after: Some(state(&m)),
            },
            reason,
        );
        let e = crate::seal::seal_in(&mut c, e).await?;
        let ledger = c.append_events(&[e]).await?;
        c.model_history_insert(&ModelHistory {
            name: m.name.clone(),
            version: m.version.clone(),
            seq: 0,
            at: now,
            activity: "model.register".into(),
            from_state: None,
            to_state: m.state.clone(),
            actor: actor.name(),
            why: reason.why.clone(),
            ticket: reason.ticket.clone(),
            ledger_index: ledger.start as i64,
        })
        .await?;
        c.commit().await?;
        Ok(Recorded { value: m, ledger })
    }

    /// Attaches a model-signing bundle: it must verify with `key` and sign exactly the
    /// registered files (same names, same digests).
    pub async fn sign_model(
        &self,
        actor: &Actor,
        name: &str,
        version: &str,
        bundle: &str,
        key: &PublicKey,
        reason: &Reason,
    ) -> Result<Recorded<ModelVersion>, ControlError> {
        let parsed =
            Bundle::parse(bundle.as_bytes()).map_err(|e| ControlError::invalid(e.to_string()))?;
        let statement = parsed
            .open(key)
            .map_err(|e| ControlError::invalid(e.to_string()))?;
        let signed = Manifest::from_statement(&statement)
            .map_err(|e| ControlError::invalid(e.to_string()))?;
        let bundle = bundle.to_owned();
        let hint = key.hint();
        self.model_change(actor, ("models.sign", "model.sign"), name, version, reason, move |m| {
            let mut have: Vec<(String, String)> =
                signed.resources.iter().map(|r| (r.name.clone(), r.digest.clone())).collect();
            have.sort();
            if registered_names(m)? != have || m.manifest_digest.as_deref() != Some(signed.digest().as_str()) {
                return Err(ControlError::invalid(format!(
                    "the signature covers other files than {}@{} registered (signed digest {}, registered {}); \
                     sign the registered folder with the same serialization",
                    m.name,
                    m.version,
                    signed.digest(),
                    m.manifest_digest.as_deref().unwrap_or("none")
                )));
            }
            Self::step(m, State::Signed)?;
            m.signature = Some(bundle);
            m.signer = Some(hint);
            Ok(())
        })
        .await
    }

    /// Approves a signed (or remote) version. Someone other than its registrant approves,
    /// unless the local operator does both.
    pub async fn approve_model(
        &self,
        actor: &Actor,
        name: &str,
        version: &str,
        reason: &Reason,
    ) -> Result<Recorded<ModelVersion>, ControlError> {
        let who = actor.name();
        let local = actor.kind == ActorKind::Local;
        self.model_change(
            actor,
            ("models.approve", "model.approve"),
            name,
            version,
            reason,
            move |m| {
                if !local && m.registered_by == who {
                    return Err(ControlError::invalid(format!(
                        "{who} registered {}@{}; someone else approves it",
                        m.name, m.version
                    )));
                }
                Self::step(m, State::Approved)
            },
        )
        .await
    }

    /// Promotes an approved version: from now on the gateway serves it where a route names it.
    pub async fn promote_model(
        &self,
        actor: &Actor,
        name: &str,
        version: &str,
        reason: &Reason,
    ) -> Result<Recorded<ModelVersion>, ControlError> {
        self.model_change(
            actor,
            ("models.promote", "model.promote"),
            name,
            version,
            reason,
            |m| Self::step(m, State::Promoted),
        )
        .await
    }

    /// Retires a version: the gateway stops serving it. Final.
    pub async fn retire_model(
        &self,
        actor: &Actor,
        name: &str,
        version: &str,
        reason: &Reason,
    ) -> Result<Recorded<ModelVersion>, ControlError> {
        self.model_change(
            actor,
            ("models.retire", "model.retire"),
            name,
            version,
            reason,
            |m| Self::step(m, State::Retired),
        )
        .await
    }

    /// Attaches signed SLSA provenance whose subject is the registered manifest digest.
    pub async fn attest_model(
        &self,
        actor: &Actor,
        name: &str,
        version: &str,
        envelope: &Envelope,
        key: &PublicKey,
        reason: &Reason,
    ) -> Result<Recorded<ModelVersion>, ControlError> {
        let p =
            Provenance::open(envelope, key).map_err(|e| ControlError::invalid(e.to_string()))?;
        let env =
            serde_json::to_value(envelope).map_err(|e| ControlError::invalid(e.to_string()))?;
        self.model_change(
            actor,
            ("models.attest", "model.attest"),
            name,
            version,
            reason,
            move |m| {
                if m.manifest_digest.as_deref() != Some(p.subject_sha256.as_str()) {
                    return Err(ControlError::invalid(format!(
                        "the provenance's subject is sha256:{}, not {}@{}'s manifest digest {}",
                        p.subject_sha256,
                        m.name,
                        m.version,
                        m.manifest_digest
                            .as_deref()
                            .unwrap_or("(none: a remote model)")
                    )));
                }
                let mut all: Vec<Value> = serde_json::from_str(&m.attestations).unwrap_or_default();
                all.push(
                    json!({"type": "slsa-provenance-v1", "signer": key.hint(), "envelope": env}),
                );
                m.attestations = Value::Array(all).to_string();
                Ok(())
            },
        )
        .await
    }
}

impl Control {
    /// Attaches a signed model card: the signature must be by `key`, over exactly `text`,
    /// for this version; the card's `custos.manifest_digest` must be the registered one. The
    /// promotion record then names the card's digest.
    pub async fn attach_card(
        &self,
        actor: &Actor,
        name: &str,
        version: &str,
        card: &SignedCard<'_>,
        reason: &Reason,
    ) -> Result<Recorded<ModelVersion>, ControlError> {
        let SignedCard {
            text,
            envelope,
            key,
        } = *card;
        use custos_govern::models::card;
        card::verify(envelope, key, name, version, text)
            .map_err(|e| ControlError::invalid(e.to_string()))?;
        let parsed = card::Card::parse(text)
            .map_err(|p| ControlError::invalid(format!("line {}: {}", p.line, p.message)))?;
        let stated = parsed
            .front
            .pointer("/custos/manifest_digest")
            .and_then(Value::as_str)
            .map(|s| s.trim_start_matches("sha256:").to_owned());
        let env =
            serde_json::to_string(envelope).map_err(|e| ControlError::invalid(e.to_string()))?;
        let text = text.to_owned();
        self.model_change(actor, ("models.card", "model.card"), name, version, reason, move |m| {
            if m.manifest_digest.is_some() && stated != m.manifest_digest {
                return Err(ControlError::invalid(format!(
                    "the card's custos.manifest_digest ({}) is not {}@{}'s ({}); custos models card lint shows why",
                    stated.as_deref().unwrap_or("missing"),
                    m.name,
                    m.version,
                    m.manifest_digest.as_deref().unwrap_or("")
                )));
            }
            m.card_digest = Some(card::digest(&text));
            m.card = Some(text);
            m.card_signature = Some(env);
            Ok(())
        })
        .await
    }
}
