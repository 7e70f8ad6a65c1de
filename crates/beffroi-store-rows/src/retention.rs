//! What the retention purge decides about a row, whatever the store: a stored pair's
//! category and cutoff, and the redaction of the people named in a row.

use beffroi_core::Territory;
use beffroi_core::territory::DataCategory;
use beffroi_engine::store::PurgePlan;

/// Category and cutoff of a stored (device, field) pair.
pub fn cutoff_of(
    t: &Territory,
    plan: &PurgePlan,
    device: &str,
    field: &str,
) -> (DataCategory, i64) {
    let found = t.device_id(device).and_then(|d| {
        let kind = t.device(d).kind;
        let f = t.kind(kind).field(field)?;
        plan.fields.get(kind.get())?.get(f.get()).copied()
    });
    match found {
        Some((c, cut)) => (c, cut.0),
        // Unknown now: its category is unknown, the strictest cutoff applies.
        None => (DataCategory::Personal, plan.unknown_field.0),
    }
}

pub fn redact_actor(plan: &PurgePlan, actor: &str) -> String {
    if actor.starts_with("user:") {
        format!("user:{}", plan.role_of(actor))
    } else {
        actor.to_string()
    }
}

/// Redacts the `done_by` of each procedure step (`[{"text","done_by","done_at"}]`).
pub fn redact_sop(plan: &PurgePlan, sop: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(sop) else {
        return sop.to_string();
    };
    if let Some(steps) = v.as_array_mut() {
        for step in steps {
            if let Some(by) = step
                .get("done_by")
                .and_then(|b| b.as_str())
                .map(str::to_string)
            {
                step["done_by"] = serde_json::Value::String(redact_actor(plan, &by));
            }
        }
    }
    v.to_string()
}
