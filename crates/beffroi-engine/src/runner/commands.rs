//! Commands from the API to the pipeline task, and the replies owed to their callers
//! ([`Pending`]), settled by the writer once the batch that carries them is committed or
//! has failed.

use super::*;

pub(super) enum Command {
    Act {
        id: IncidentId,
        action: IncidentAction,
        actor: Actor,
        reply: oneshot::Sender<Result<Incident, ActError>>,
    },
    ReplaceRules(Arc<RuleSet>, Vec<Procedure>),
    ReplaceOperations(
        Vec<beffroi_core::UnitSpec>,
        beffroi_core::incident::EscalationPolicy,
    ),
    Ops {
        cmd: OpsCommand,
        actor: Actor,
        reply: oneshot::Sender<Result<OpsOutcome, ActError>>,
    },
    DeclareEvent {
        event: Box<beffroi_rules::EventRules>,
        reply: oneshot::Sender<Result<EventView, EventError>>,
    },
    /// A security signal from an edge (broker feed, simulator) for anomaly detection.
    Security(beffroi_core::SecuritySignal),
    /// The networks a partner's indicators flag (a TAXII source), replacing its earlier
    /// list.
    KnownBad {
        source: String,
        networks: Vec<beffroi_sentinel::KnownBad>,
    },
    /// An alert from outside (a CAP feed), mapped onto the territory.
    External {
        alert: Box<crate::external::ExternalAlert>,
        reply: oneshot::Sender<Result<Option<Incident>, ActError>>,
    },
    CancelEvent {
        id: String,
        actor: String,
        reply: oneshot::Sender<Result<EventView, EventError>>,
    },
    DeviceKeys(Arc<crate::trust::DeviceKeys>),
    /// Sealed values behind the pseudonyms of scrubbed free text, for `identities`.
    Identities(Vec<beffroi_privacy::Sealed>),
    Privacy {
        cmd: PrivacyCommand,
        reply: oneshot::Sender<Result<PrivacyOutcome, PrivacyError>>,
    },
}

/// A reply owed to a caller of a command, with the result the pipeline computed. The writer
/// settles it exactly once: with that result after the commit that carries its changes,
/// with a store error when that commit fails (nothing it did was stored).
pub(super) enum Pending {
    Act(
        oneshot::Sender<Result<Incident, ActError>>,
        Box<Result<Incident, TransitionError>>,
    ),
    Ops(
        oneshot::Sender<Result<OpsOutcome, ActError>>,
        Result<OpsOutcome, ActError>,
    ),
    Event(
        oneshot::Sender<Result<EventView, EventError>>,
        Result<EventView, EventError>,
    ),
    External(
        oneshot::Sender<Result<Option<Incident>, ActError>>,
        Box<Option<Incident>>,
    ),
}

impl Pending {
    /// The changes are durable: the caller gets its result. A caller gone away is fine.
    pub(super) fn committed(self) {
        match self {
            Pending::Act(tx, r) => {
                let _ = tx.send(r.map_err(ActError::from));
            }
            Pending::Ops(tx, r) => {
                let _ = tx.send(r);
            }
            Pending::Event(tx, r) => {
                let _ = tx.send(r);
            }
            Pending::External(tx, r) => {
                let _ = tx.send(Ok(*r));
            }
        }
    }

    /// The commit failed: the caller learns that nothing was stored.
    pub(super) fn failed(self, msg: &str) {
        match self {
            Pending::Act(tx, _) => {
                let _ = tx.send(Err(ActError::Store(msg.to_string())));
            }
            Pending::Ops(tx, _) => {
                let _ = tx.send(Err(ActError::Store(msg.to_string())));
            }
            Pending::Event(tx, _) => {
                let _ = tx.send(Err(EventError::Store(msg.to_string())));
            }
            Pending::External(tx, _) => {
                let _ = tx.send(Err(ActError::Store(msg.to_string())));
            }
        }
    }
}

pub(super) fn handle_command(
    p: &mut Pipeline,
    cmd: Command,
    clock: &Arc<dyn Clock>,
    rules_tx: &watch::Sender<Arc<RuleSet>>,
    job: &mut Job,
) {
    match cmd {
        Command::Act {
            id,
            action,
            actor,
            reply,
        } => {
            let r = p.act(id, &action, &actor, clock.now(), &mut job.out);
            job.replies.push(Pending::Act(reply, Box::new(r)));
        }
        Command::ReplaceRules(rules, procedures) => {
            tracing::info!(rules = rules.len(), "rules replaced");
            p.replace_rules(Arc::clone(&rules));
            p.replace_procedures(procedures);
            let _ = rules_tx.send(Arc::clone(p.rules()));
        }
        Command::DeclareEvent { event, reply } => {
            let r = p.declare_event(*event, false, clock.now(), &mut job.out);
            job.replies.push(Pending::Event(reply, r));
        }
        Command::CancelEvent { id, actor, reply } => {
            let r = p.cancel_event(&id, &actor, clock.now(), &mut job.out);
            job.replies.push(Pending::Event(reply, r));
        }
        Command::Security(signal) => {
            p.on_security_signal(&signal, clock.now(), &mut job.out);
        }
        Command::KnownBad { source, networks } => {
            tracing::info!(source = %source, networks = networks.len(), "known-bad networks replaced");
            p.set_known_bad(&source, networks);
        }
        Command::External { alert, reply } => {
            let r = p.external_alert(&alert, &mut job.out);
            job.replies.push(Pending::External(reply, Box::new(r)));
        }
        Command::Identities(sealed) => {
            let seen = clock.now();
            job.out.batch.identities.extend(
                sealed
                    .into_iter()
                    .map(|sealed| crate::store::StoredIdentity { sealed, seen }),
            );
        }
        Command::Privacy { .. } => {
            // Handled by the pipeline loop, which knows the configuration.
        }
        Command::DeviceKeys(keys) => {
            tracing::info!(devices = keys.len(), "device signing keys replaced");
            p.set_device_keys(keys);
        }
        Command::ReplaceOperations(units, escalation) => {
            tracing::info!(units = units.len(), "units and escalation delays replaced");
            p.replace_operations(units, escalation, clock.now(), &mut job.out);
        }
        Command::Ops { cmd, actor, reply } => {
            let now = clock.now();
            let out = &mut job.out;
            let r = match cmd {
                OpsCommand::UnitStatus { unit, status } => p
                    .set_unit_status(&unit, status, now, out)
                    .map(OpsOutcome::Unit)
                    .map_err(ActError::from),
                OpsCommand::OpenCrisis(req) => p
                    .open_crisis(req, &actor, now, out)
                    .map(OpsOutcome::Crisis)
                    .map_err(ActError::from),
                OpsCommand::Crisis { id, cmd } => p
                    .crisis_act(id, &cmd, &actor, now, out)
                    .map(OpsOutcome::Crisis)
                    .map_err(ActError::from),
                OpsCommand::Quarantine {
                    device,
                    quarantined,
                    reason,
                } => {
                    let who = match &actor {
                        Actor::User(u) => u.to_string(),
                        other => other.to_string(),
                    };
                    let r = if quarantined {
                        p.quarantine(&device, &who, &reason, now, out)
                    } else {
                        p.release(&device, &who, &reason, now, out)
                    };
                    r.map(OpsOutcome::Quarantine).map_err(ActError::from)
                }
                OpsCommand::Situation { id, action, only } => p
                    .act_situation(id, &action, &only, &actor, now, out)
                    .map(OpsOutcome::Situation)
                    .map_err(ActError::from),
                OpsCommand::SplitSituation { id, incident } => p
                    .split_situation(id, incident, &actor, now, out)
                    .map(OpsOutcome::Situation)
                    .map_err(ActError::from),
                OpsCommand::MergeSituations { into, from } => p
                    .merge_situations(into, from, &actor, now, out)
                    .map(OpsOutcome::Situation)
                    .map_err(ActError::from),
                OpsCommand::WriteNote { communes, text } => p
                    .write_note(&user_name(&actor), communes, text, now, out)
                    .map(OpsOutcome::Note)
                    .map_err(ActError::from),
                OpsCommand::ReadNote(id) => p
                    .read_note(id, &user_name(&actor), now, out)
                    .map(OpsOutcome::Note)
                    .map_err(ActError::from),
                OpsCommand::Shelve {
                    incident,
                    reason,
                    duration,
                } => p
                    .shelve(incident, &actor.to_string(), reason, duration, now, out)
                    .map(OpsOutcome::Shelf)
                    .map_err(ActError::from),
                OpsCommand::Unshelve { incident, reason } => p
                    .unshelve(incident, &actor.to_string(), reason, now, out)
                    .map(OpsOutcome::Shelf)
                    .map_err(ActError::from),
            };
            job.replies.push(Pending::Ops(reply, r));
        }
    }
}

/// The account name of a user actor (the actor's text otherwise).
pub(super) fn user_name(actor: &Actor) -> String {
    match actor {
        Actor::User(u) => u.to_string(),
        other => other.to_string(),
    }
}
