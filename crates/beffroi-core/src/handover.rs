//! The shift handover: the notes outgoing operators write for the incoming ones (scoped to
//! the author's communes, each read recorded), the grouping of the open incidents, and what
//! of the shift's log is worth handing over (people's actions and the openings of critical
//! and major incidents; the system's chatter — reminders, raises again, conditions cleared
//! — is left out).
//!
//! The [`NoteBoard`] keeps the newest notes in memory ([`MAX_NOTES`]); the engine stores
//! every change ([`NoteChange`]) and restores the board from the store on start.

use std::sync::Arc;

use crate::incident::{Actor, Incident, LogEntry, Severity};
use crate::territory::CommuneIdx;
use crate::text::SafeText;
use crate::time::Timestamp;

/// Most notes the board keeps in memory (the newest).
pub const MAX_NOTES: usize = 1_000;
/// The longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 4_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NoteId(pub u64);

/// Who read a note, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteRead {
    pub by: Arc<str>,
    pub at: Timestamp,
}

/// A note written by an operator at the end of a shift.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandoverNote {
    pub id: NoteId,
    /// The author's account name.
    pub author: Arc<str>,
    pub at: Timestamp,
    /// The author's communes when writing it (empty: the whole territory). Only a reader
    /// whose scope meets them sees the note.
    pub communes: Vec<CommuneIdx>,
    /// Scrubbed before it reaches the board.
    pub text: SafeText,
    /// Reads, oldest first, at most one per reader.
    pub reads: Vec<NoteRead>,
}

impl HandoverNote {
    pub fn read_by(&self, who: &str) -> Option<&NoteRead> {
        self.reads.iter().find(|r| &*r.by == who)
    }
}

/// What a commit makes durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoteChange {
    Written(HandoverNote),
    Read { note: NoteId, read: NoteRead },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("a handover note needs some text")]
    Empty,
    #[error("a handover note holds at most {MAX_NOTE_CHARS} characters")]
    TooLong,
    #[error("no such handover note")]
    NotFound,
}

/// The newest handover notes.
#[derive(Clone, Debug, Default)]
pub struct NoteBoard {
    /// Oldest first.
    notes: Vec<HandoverNote>,
    next: u64,
}

impl NoteBoard {
    /// Writes a note; its id follows every id the board has seen.
    pub fn write(
        &mut self,
        author: &str,
        communes: Vec<CommuneIdx>,
        text: SafeText,
        now: Timestamp,
    ) -> Result<NoteChange, NoteError> {
        let text = text.trimmed();
        if text.is_empty() {
            return Err(NoteError::Empty);
        }
        if text.chars().count() > MAX_NOTE_CHARS {
            return Err(NoteError::TooLong);
        }
        self.next = self.next.max(1);
        let note = HandoverNote {
            id: NoteId(self.next),
            author: author.into(),
            at: now,
            communes,
            text,
            reads: Vec::new(),
        };
        self.next += 1;
        self.keep(note.clone());
        Ok(NoteChange::Written(note))
    }

    /// Records that `by` read the note: `None` when they had already (the first read stays).
    pub fn mark_read(
        &mut self,
        id: NoteId,
        by: &str,
        now: Timestamp,
    ) -> Result<Option<NoteChange>, NoteError> {
        let note = self
            .notes
            .iter_mut()
            .find(|n| n.id == id)
            .ok_or(NoteError::NotFound)?;
        if note.read_by(by).is_some() {
            return Ok(None);
        }
        let read = NoteRead {
            by: by.into(),
            at: now,
        };
        note.reads.push(read.clone());
        Ok(Some(NoteChange::Read { note: id, read }))
    }

    /// Puts back a stored note (at start), in any order.
    pub fn restore(&mut self, note: HandoverNote) {
        self.next = self.next.max(note.id.0 + 1);
        self.notes.retain(|n| n.id != note.id);
        self.keep(note);
        self.notes.sort_by_key(|n| n.id);
    }

    fn keep(&mut self, note: HandoverNote) {
        self.notes.push(note);
        if self.notes.len() > MAX_NOTES {
            let extra = self.notes.len() - MAX_NOTES;
            self.notes.drain(..extra);
        }
    }

    /// Forgets the notes written before `cutoff` (retention); whether any went.
    pub fn forget_before(&mut self, cutoff: Timestamp) -> bool {
        let before = self.notes.len();
        self.notes.retain(|n| n.at >= cutoff);
        self.notes.len() != before
    }

    pub fn get(&self, id: NoteId) -> Option<&HandoverNote> {
        self.notes.iter().find(|n| n.id == id)
    }

    /// Every note kept, oldest first.
    pub fn notes(&self) -> &[HandoverNote] {
        &self.notes
    }
}

/// The newest `limit` notes that `sees` lets through (it is given a note's communes),
/// newest first.
pub fn latest_notes(
    notes: &[HandoverNote],
    sees: impl Fn(&[CommuneIdx]) -> bool,
    limit: usize,
) -> Vec<&HandoverNote> {
    notes
        .iter()
        .rev()
        .filter(|n| sees(&n.communes))
        .take(limit)
        .collect()
}

/// Whether a line of an incident's log belongs in the handover: what people did, and the
/// opening (or re-opening by a rule) of a critical or major incident. Reminders, raises
/// again, conditions cleared, automatic resolutions and escalations are the system's
/// chatter: the incident's own log keeps them.
pub fn worth_handing_over(entry: &LogEntry, severity: Severity) -> bool {
    match entry.actor {
        Actor::User(_) => true,
        Actor::Rule(_) | Actor::System => {
            matches!(&*entry.action, "opened" | "reopened") && severity >= Severity::Major
        }
    }
}

/// The key incidents are grouped by in the handover: their situation, or for an incident
/// in none known, its category and commune. `category` and `commune` are those of the
/// group's first incident (the most severe, the oldest).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    pub situation: Option<crate::situation::SituationId>,
    pub category: Arc<str>,
    pub commune: CommuneIdx,
}

/// Open incidents handed over together.
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentGroup<'a> {
    pub key: GroupKey,
    /// Most severe first, then oldest.
    pub incidents: Vec<&'a Incident>,
}

impl IncidentGroup<'_> {
    pub fn worst(&self) -> Severity {
        self.incidents
            .iter()
            .map(|i| i.severity)
            .max()
            .unwrap_or(Severity::Info)
    }
}

/// THE grouping of the handover's open incidents, in one place: the incidents of one
/// situation together (`situation_of`, the situations the engine keeps), and those in none
/// known by category and commune. Groups come most severe first, then by their oldest
/// incident.
pub fn group_open(
    incidents: &[Incident],
    situation_of: impl Fn(crate::IncidentId) -> Option<crate::situation::SituationId>,
) -> Vec<IncidentGroup<'_>> {
    // By situation, else by category and commune.
    type Bucket = (
        Option<crate::situation::SituationId>,
        Option<(Arc<str>, CommuneIdx)>,
    );
    let mut groups: std::collections::BTreeMap<Bucket, Vec<&Incident>> = Default::default();
    for i in incidents.iter().filter(|i| i.status.is_open()) {
        let bucket = match situation_of(i.id) {
            Some(s) => (Some(s), None),
            None => (None, Some((Arc::clone(&i.category), i.commune))),
        };
        groups.entry(bucket).or_default().push(i);
    }
    let mut out: Vec<IncidentGroup<'_>> = groups
        .into_iter()
        .filter_map(|((situation, _), mut incidents)| {
            incidents.sort_by(|a, b| {
                b.severity
                    .cmp(&a.severity)
                    .then(a.opened_at.cmp(&b.opened_at))
                    .then(a.id.cmp(&b.id))
            });
            let first = incidents.first()?;
            let key = GroupKey {
                situation,
                category: Arc::clone(&first.category),
                commune: first.commune,
            };
            Some(IncidentGroup { key, incidents })
        })
        .collect();
    let oldest = |g: &IncidentGroup<'_>| g.incidents.iter().map(|i| i.opened_at).min();
    out.sort_by(|a, b| {
        b.worst()
            .cmp(&a.worst())
            .then(oldest(a).cmp(&oldest(b)))
            .then(a.key.cmp(&b.key))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::Status;

    fn ts(m: i64) -> Timestamp {
        Timestamp(1_700_000_000_000 + m * 60_000)
    }

    #[test]
    fn a_note_needs_text_ids_follow_and_a_read_is_recorded_once() {
        let mut b = NoteBoard::default();
        assert_eq!(
            b.write("op", vec![], SafeText::from("   "), ts(0)),
            Err(NoteError::Empty)
        );
        let NoteChange::Written(n1) = b
            .write(
                "op",
                vec![CommuneIdx(1)],
                SafeText::from(" Pompe 3 "),
                ts(0),
            )
            .expect("written")
        else {
            panic!("a written note");
        };
        assert_eq!((n1.id, &*n1.text), (NoteId(1), "Pompe 3"));
        let first = b.mark_read(n1.id, "op2", ts(5)).expect("read");
        assert_eq!(
            first,
            Some(NoteChange::Read {
                note: NoteId(1),
                read: NoteRead {
                    by: "op2".into(),
                    at: ts(5)
                }
            })
        );
        assert_eq!(b.mark_read(n1.id, "op2", ts(9)).expect("again"), None);
        assert_eq!(b.get(n1.id).expect("kept").reads.len(), 1);
        assert_eq!(
            b.mark_read(NoteId(7), "op2", ts(9)),
            Err(NoteError::NotFound)
        );
        // A restored board goes on after the highest id it saw.
        let mut r = NoteBoard::default();
        r.restore(HandoverNote {
            id: NoteId(41),
            ..n1.clone()
        });
        let NoteChange::Written(n) = r
            .write("op", vec![], SafeText::from("x"), ts(1))
            .expect("written")
        else {
            panic!("a written note");
        };
        assert_eq!(n.id, NoteId(42));
        // Retention forgets the old notes; ids still go on.
        assert!(r.forget_before(ts(1)));
        assert_eq!(r.notes().len(), 1);
        assert!(!r.forget_before(ts(1)));
    }

    #[test]
    fn latest_notes_are_cut_to_the_readers_scope_newest_first() {
        let mut b = NoteBoard::default();
        for (i, c) in [vec![CommuneIdx(0)], vec![CommuneIdx(1)], vec![]]
            .into_iter()
            .enumerate()
        {
            b.write("op", c, SafeText::from("n"), ts(i as i64))
                .expect("written");
        }
        let ids = |l: Vec<&HandoverNote>| l.iter().map(|n| n.id.0).collect::<Vec<_>>();
        let in_zero = |c: &[CommuneIdx]| c.is_empty() || c.contains(&CommuneIdx(0));
        assert_eq!(ids(latest_notes(b.notes(), in_zero, 10)), [3, 1]);
        assert_eq!(ids(latest_notes(b.notes(), in_zero, 1)), [3]);
    }

    fn log(actor: Actor, action: &'static str) -> LogEntry {
        LogEntry {
            at: ts(0),
            actor,
            action: action.into(),
            detail: SafeText::default(),
            message: None,
        }
    }

    #[test]
    fn chatter_is_left_out() {
        let rule = || Actor::Rule("r".into());
        assert!(worth_handing_over(
            &log(Actor::User("op".into()), "comment"),
            Severity::Info
        ));
        assert!(worth_handing_over(
            &log(rule(), "opened"),
            Severity::Critical
        ));
        assert!(worth_handing_over(&log(rule(), "opened"), Severity::Major));
        assert!(!worth_handing_over(&log(rule(), "opened"), Severity::Minor));
        for chatter in [
            "reminder",
            "raised_again",
            "condition_cleared",
            "auto_resolved",
            "escalated",
            "escalated_to_supervisor",
        ] {
            assert!(
                !worth_handing_over(&log(Actor::System, chatter), Severity::Critical),
                "{chatter}"
            );
            assert!(
                !worth_handing_over(&log(rule(), chatter), Severity::Critical),
                "{chatter}"
            );
        }
    }

    fn inc(id: u64, category: &'static str, commune: u32, sev: Severity, at: i64) -> Incident {
        Incident {
            id: crate::incident::IncidentId(id),
            key: crate::alarm::DedupKey(format!("r@site:{id}").into()),
            rule: "r".into(),
            category: category.into(),
            severity: sev,
            status: Status::New,
            title: SafeText::from("t"),
            commune: CommuneIdx(commune),
            site: crate::territory::SiteIdx(0),
            device: None,
            position: crate::geo::Point::new(5.0, 47.0),
            opened_at: ts(at),
            updated_at: ts(at),
            acknowledged_at: None,
            resolved_at: None,
            closed_at: None,
            owner: None,
            condition_active: true,
            alarm_count: 1,
            evidence: SafeText::default(),
            sop_title: None,
            sop: vec![],
            reminded_at: None,
            escalated_at: None,
            trigger: None,
            peak: None,
            current: None,
            current_at: None,
            reopened_at: None,
        }
    }

    #[test]
    fn open_incidents_are_grouped_by_category_and_commune_worst_first() {
        let mut closed = inc(9, "flood", 0, Severity::Critical, 0);
        closed.status = Status::Closed;
        let list = vec![
            inc(1, "flood", 0, Severity::Minor, 1),
            inc(2, "intrusion", 0, Severity::Critical, 5),
            inc(3, "flood", 0, Severity::Major, 3),
            inc(4, "flood", 1, Severity::Minor, 0),
            closed,
        ];
        let groups = group_open(&list, |_| None);
        let shape: Vec<(&str, u32, Vec<u64>)> = groups
            .iter()
            .map(|g| {
                (
                    &*g.key.category,
                    g.key.commune.0,
                    g.incidents.iter().map(|i| i.id.0).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                ("intrusion", 0, vec![2]),
                ("flood", 0, vec![3, 1]),
                ("flood", 1, vec![4]),
            ]
        );
        // Incidents of one situation are handed over together, whatever their category
        // and commune; the others as before.
        let sit = crate::situation::SituationId(7);
        let groups = group_open(&list, |id| (id.0 == 1 || id.0 == 4).then_some(sit));
        let shape: Vec<(Option<u64>, Vec<u64>)> = groups
            .iter()
            .map(|g| {
                (
                    g.key.situation.map(|s| s.0),
                    g.incidents.iter().map(|i| i.id.0).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [(None, vec![2]), (None, vec![3]), (Some(7), vec![4, 1])]
        );
    }
}
