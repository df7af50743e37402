//! How the API clients (`tocsin incidents`, `tocsin approve`, `tocsin status`) print what the
//! daemon answers: one line an incident or approval, times to the second.

/// A timestamp from the API to the second, as the pages show it; nanoseconds are noise here.
pub(crate) fn when(v: &serde_json::Value) -> String {
    v.as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(
            || s(v).to_owned(),
            |t| {
                t.with_timezone(&chrono::Utc)
                    .format("%Y-%m-%d %H:%M:%S UTC")
                    .to_string()
            },
        )
}

/// A JSON string field as text, `?` when absent.
pub(crate) fn s(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or("?")
}

pub(crate) fn incident_line(i: &serde_json::Value) -> String {
    format!(
        "#{} {} {} {} {} {}",
        i["id"],
        s(&i["severity"]),
        s(&i["rule"]),
        s(&i["account"]),
        s(&i["state"]),
        when(&i["opened_at"])
    )
}

/// The evidence as `name: value` lines; a profile change reads `field: before → after`.
pub(crate) fn evidence_lines(evidence: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in evidence.as_object().into_iter().flatten() {
        match (k.as_str(), v) {
            ("kind" | "fingerprint", _) | (_, serde_json::Value::Null) => {}
            ("changes", serde_json::Value::Object(changes)) => {
                for (field, c) in changes {
                    out.push(format!(
                        "{field}: {} → {}",
                        c["before"].as_str().unwrap_or("(none)"),
                        s(&c["after"])
                    ));
                }
            }
            (_, serde_json::Value::String(text)) => out.push(format!("{k}: {text}")),
            (_, serde_json::Value::Array(items)) => out.push(format!(
                "{k}: {}",
                items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            (_, other) => out.push(format!("{k}: {other}")),
        }
    }
    out
}

pub(crate) fn approval_line(a: &serde_json::Value) -> String {
    let e = &a["entry"];
    let what = match s(&e["type"]) {
        "approved_post" => {
            let target = match (e["fingerprint"].as_str(), e["post_id"].as_str()) {
                (Some(fp), _) => format!("fingerprint {}", fp.get(..12).unwrap_or(fp)),
                (None, Some(id)) => format!("post {id}"),
                (None, None) => "?".into(),
            };
            let mut line = format!("post {} {target}", s(&e["account"]));
            if let Some(t) = e["expires_at"].as_str() {
                line.push_str(&format!(" until {t}"));
            }
            if let Some(n) = e["note"].as_str() {
                line.push_str(&format!(" ({n})"));
            }
            line
        }
        "baseline" => format!("baseline {} {}", s(&e["account"]), s(&e["field"])),
        "revocation" => format!("revokes #{}: {}", e["seq"], s(&e["reason"])),
        "approved_campaign" => {
            let mut line = format!("campaign {} {}", s(&e["sender"]), s(&e["campaign"]));
            match (e["max_recipients"].as_u64(), e["window"].as_str()) {
                (Some(n), Some(w)) => line.push_str(&format!(" up to {n} per {w}")),
                _ => line.push_str(" uncapped"),
            }
            line
        }
        other => other.to_owned(),
    };
    let mut line = format!("#{} {} {what} by {}", a["seq"], when(&a["at"]), s(&e["by"]));
    if a["revoked"].as_bool() == Some(true) {
        line.push_str(&format!(" · REVOKED by #{}", a["revoked_by"]));
    }
    line
}

pub(crate) fn status_line(a: &serde_json::Value) -> String {
    let mut line = format!(
        "{} {} {} · last ok {} · {} polls, {} errors",
        s(&a["name"]),
        s(&a["platform"]),
        s(&a["base_url"]),
        if a["last_success"].is_null() {
            "never".to_owned()
        } else {
            when(&a["last_success"])
        },
        a["polls"],
        a["errors"]
    );
    let rl = &a["rate_limit"];
    if !rl.is_null() {
        let limit = rl["limit"]
            .as_u64()
            .map_or_else(|| "?".to_owned(), |l| l.to_string());
        line.push_str(&format!(" · rate {}/{limit}", rl["remaining"]));
    }
    line.push_str(&format!(
        " · {} open, {} acked incident(s)",
        a["open_incidents"], a["acked_incidents"]
    ));
    if let Some(err) = a["last_error"].as_object() {
        line.push_str(&format!(
            " · last error {}: {}",
            err.get("at").map_or_else(|| "?".to_owned(), when),
            err.get("message").and_then(|v| v.as_str()).unwrap_or("?")
        ));
    }
    line
}

/// What `tocsin log verify` prints: each chain, the signature, the store, every problem.
pub(crate) fn verification(
    v: &tocsin::store::Verification,
    key: Option<tocsin::store::PublicKey>,
) -> String {
    use tocsin::store::SignatureCheck;
    let mut out = String::new();
    let chains = [
        (
            "approved log",
            "entries",
            &v.log,
            v.heads.approved_log.as_ref(),
            "approved_log",
        ),
        (
            "incident timeline",
            "events",
            &v.timeline,
            v.heads.timeline.as_ref(),
            "timeline",
        ),
    ];
    for (name, unit, report, end, chain) in chains {
        if report.is_ok() {
            let head = end.map_or_else(
                || "empty".to_owned(),
                |h| format!("head {chain}:{}:{}", h.seq, h.hash),
            );
            out += &format!("{name} ok: {} {unit}, {head}\n", report.entries);
        } else {
            out += &format!("{name} TAMPERED: {} {unit} checked\n", report.entries);
            for p in &report.problems {
                out += &format!("  {p}\n");
            }
        }
    }
    out += &match (&v.signature, key) {
        (SignatureCheck::Valid, Some(k)) => format!("signature ok: the heads are signed by {k}\n"),
        (SignatureCheck::Invalid(p), _) => format!("signature BAD: {p}\n"),
        (SignatureCheck::NeverSigned, Some(_)) => {
            "signature MISSING: the heads have never been signed (no general.signing_key was \
             configured yet)\n"
                .to_owned()
        }
        _ => "signature not checked: give --public-key; without it an edit that recomputes \
              every hash is not caught\n"
            .to_owned(),
    };
    if !v.store.is_empty() {
        out += "store TAMPERED:\n";
        for p in &v.store {
            out += &format!("  {p}\n");
        }
    }
    out
}
