//! Handover notes with their reads, and the shelving log of alarms: written with the batch,
//! read back on start to restore the note board and the shelf.

use beffroi_core::handover::{HandoverNote, MAX_NOTES, NoteChange, NoteId, NoteRead};
use beffroi_core::shelving::{ShelfAct, ShelfChange};
use beffroi_core::{DedupKey, SafeText, Territory, Timestamp};
use beffroi_engine::StoreError;
use postgres::{GenericClient, Transaction};

use crate::error::{Context, Get};
use crate::rows::{id_from_sql, id_to_sql};

/// The communes of a note as stored: their ids, comma-separated (empty: the territory).
fn communes_to_sql(t: &Territory, communes: &[beffroi_core::CommuneIdx]) -> String {
    communes
        .iter()
        .filter_map(|c| t.communes.get(c.get()))
        .map(|c| &*c.id)
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn write_notes(
    tx: &mut Transaction<'_>,
    t: &Territory,
    changes: &[NoteChange],
) -> Result<(), StoreError> {
    for c in changes {
        match c {
            NoteChange::Written(n) => {
                tx.execute(
                    "INSERT INTO handover_notes (id, author, at, communes, text) \
                     VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &i64::try_from(n.id.0).unwrap_or(i64::MAX),
                        &&*n.author,
                        &n.at.0,
                        &communes_to_sql(t, &n.communes),
                        &n.text.as_str(),
                    ],
                )
                .ctx("write handover note")?;
            }
            NoteChange::Read { note, read } => {
                tx.execute(
                    "INSERT INTO handover_note_reads (note_id, reader, at) \
                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    &[
                        &i64::try_from(note.0).unwrap_or(i64::MAX),
                        &&*read.by,
                        &read.at.0,
                    ],
                )
                .ctx("write handover note read")?;
            }
        }
    }
    Ok(())
}

/// The newest [`MAX_NOTES`] notes with their reads, oldest first. A commune no longer in the
/// territory is dropped from a note's communes (a note left with none is skipped: it would
/// otherwise read as territory-wide).
pub(crate) fn notes(
    client: &mut impl GenericClient,
    t: &Territory,
) -> Result<Vec<HandoverNote>, StoreError> {
    let rows = client
        .query(
            "SELECT id, author, at, communes, text FROM \
             (SELECT * FROM handover_notes ORDER BY id DESC LIMIT $1) newest ORDER BY id",
            &[&i64::try_from(MAX_NOTES).unwrap_or(i64::MAX)],
        )
        .ctx("read handover notes")?;
    let mut out = Vec::new();
    for r in rows {
        let (id, author, at): (i64, String, i64) = (r.at(0)?, r.at(1)?, r.at(2)?);
        let (communes, text): (String, String) = (r.at(3)?, r.at(4)?);
        let listed: Vec<&str> = communes.split(',').filter(|c| !c.is_empty()).collect();
        let known: Vec<_> = listed.iter().filter_map(|c| t.commune_id(c)).collect();
        if known.is_empty() && !listed.is_empty() {
            continue;
        }
        out.push(HandoverNote {
            id: NoteId(u64::try_from(id).unwrap_or(0)),
            author: author.into(),
            at: Timestamp(at),
            communes: known,
            text: SafeText::redacting(&text),
            reads: Vec::new(),
        });
    }
    let first = out.first().map(|n| n.id.0).unwrap_or(0);
    let reads = client
        .query(
            "SELECT note_id, reader, at FROM handover_note_reads WHERE note_id >= $1 \
             ORDER BY at, reader",
            &[&i64::try_from(first).unwrap_or(i64::MAX)],
        )
        .ctx("read handover note reads")?;
    for r in reads {
        let (note, by, at): (i64, String, i64) = (r.at(0)?, r.at(1)?, r.at(2)?);
        let note = u64::try_from(note).unwrap_or(0);
        if let Some(n) = out.iter_mut().find(|n| n.id.0 == note) {
            n.reads.push(NoteRead {
                by: by.into(),
                at: Timestamp(at),
            });
        }
    }
    Ok(out)
}

pub(crate) fn write_shelving(
    tx: &mut Transaction<'_>,
    t: &Territory,
    acts: &[ShelfAct],
) -> Result<(), StoreError> {
    let insert = tx
        .prepare(
            "INSERT INTO shelf_log (dedup_key, incident_id, commune, category, change, actor, \
             reason, at, until) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .ctx("prepare shelving act")?;
    for a in acts {
        tx.execute(
            &insert,
            &[
                &&*a.key.0,
                &id_to_sql(a.incident)?,
                &t.communes
                    .get(a.commune.get())
                    .map(|c| &*c.id)
                    .unwrap_or(""),
                &&*a.category,
                &a.change.as_str(),
                &&*a.actor,
                &a.reason.as_str(),
                &a.at.0,
                &a.until.map(|u| u.0),
            ],
        )
        .ctx("write shelving act")?;
    }
    Ok(())
}

/// The shelves in force as the log leaves them: the last act of each key, when it is a
/// shelving, oldest first. Acts of a commune no longer in the territory are skipped.
pub(crate) fn shelf_log(
    client: &mut impl GenericClient,
    t: &Territory,
) -> Result<Vec<ShelfAct>, StoreError> {
    let rows = client
        .query(
            "SELECT dedup_key, incident_id, commune, category, change, actor, reason, at, until \
             FROM shelf_log WHERE seq IN (SELECT max(seq) FROM shelf_log GROUP BY dedup_key) \
             AND change = 'shelved' ORDER BY seq",
            &[],
        )
        .ctx("read shelving log")?;
    let mut out = Vec::new();
    for r in rows {
        let (key, incident, commune): (String, i64, String) = (r.at(0)?, r.at(1)?, r.at(2)?);
        let (category, change, actor): (String, String, String) = (r.at(3)?, r.at(4)?, r.at(5)?);
        let (reason, at, until): (String, i64, Option<i64>) = (r.at(6)?, r.at(7)?, r.at(8)?);
        let (Some(commune), Some(change)) = (t.commune_id(&commune), ShelfChange::parse(&change))
        else {
            continue;
        };
        out.push(ShelfAct {
            key: DedupKey(key.into()),
            incident: id_from_sql(incident)?,
            commune,
            category: category.into(),
            change,
            actor: actor.into(),
            reason: SafeText::redacting(&reason),
            at: Timestamp(at),
            until: until.map(Timestamp),
        });
    }
    Ok(out)
}
