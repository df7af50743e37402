//! The fake's store and its JSON: accounts and statuses shaped like Mastodon's REST serializers.

use super::*;

/// Snowflake-like: milliseconds shifted left 16 bits, forced strictly increasing so
/// ids order like publication even within one millisecond.
pub(super) fn next_id(inner: &mut Inner) -> u64 {
    let ms = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
    let candidate = ms << 16;
    inner.last_id = candidate.max(inner.last_id + 1);
    inner.last_id
}

pub(super) fn insert_status(inner: &mut Inner, status: Status) -> String {
    let id = status.id.to_string();
    inner.statuses.insert(status.id, status);
    inner.changed.insert(id.clone(), Instant::now());
    id
}

pub(super) fn remove_status(inner: &mut Inner, id: u64) -> bool {
    if inner.statuses.remove(&id).is_none() {
        return false;
    }
    let boosts: Vec<u64> = inner
        .statuses
        .values()
        .filter(|s| s.reblog_of == Some(id))
        .map(|s| s.id)
        .collect();
    for boost in boosts {
        inner.statuses.remove(&boost);
        inner.changed.insert(boost.to_string(), Instant::now());
    }
    inner.changed.insert(id.to_string(), Instant::now());
    true
}

/// Parses ids the way Rails' `to_i` does: leading digits only, blank means absent.
pub(super) fn parse_id(raw: &str) -> Option<u64> {
    let digits: String = raw
        .trim()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

pub(super) fn millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

// ---------------------------------------------------------------------------------
// Entities
// ---------------------------------------------------------------------------------

pub(super) fn account_json(
    shared: &Shared,
    inner: &Inner,
    account: &Account,
    with_moved: bool,
) -> Value {
    let base = &shared.base;
    let statuses: Vec<&Status> = inner
        .statuses
        .values()
        .filter(|s| s.account_id == account.id)
        .collect();
    let last_status_at = statuses
        .iter()
        .map(|s| s.created_at)
        .max()
        .map(|t| t.format("%Y-%m-%d").to_string());
    let avatar = account
        .avatar
        .clone()
        .unwrap_or_else(|| format!("{base}/avatars/original/missing.png"));
    let header = account
        .header
        .clone()
        .unwrap_or_else(|| format!("{base}/headers/original/missing.png"));
    let midnight = account
        .created_at
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or(account.created_at);
    let mut json = json!({
        "id": account.id,
        "username": account.username,
        "acct": account.username,
        "display_name": account.display_name,
        "locked": account.locked,
        "bot": account.bot,
        "discoverable": true,
        "indexable": false,
        "group": false,
        "created_at": millis(midnight),
        "note": account.note,
        "url": account.url.clone().unwrap_or_else(|| format!("{base}/@{}", account.username)),
        "uri": format!("{base}/users/{}", account.username),
        "avatar": avatar,
        "avatar_static": avatar,
        "header": header,
        "header_static": header,
        "followers_count": 0,
        "following_count": 0,
        "statuses_count": statuses.len(),
        "last_status_at": last_status_at,
        "hide_collections": null,
        "noindex": false,
        "emojis": [],
        "roles": [],
        "fields": account.fields.iter().map(|(name, value)| json!({
            "name": name,
            "value": value,
            "verified_at": null,
        })).collect::<Vec<_>>(),
    });
    // Mastodon only includes `moved` when the account has moved, and never nests it.
    if with_moved && let Some(target) = &account.moved_to {
        json["moved"] = moved_account_json(shared, inner, target);
    }
    json
}

pub(super) fn moved_account_json(shared: &Shared, inner: &Inner, acct: &str) -> Value {
    let acct = acct.trim_start_matches('@');
    let (username, domain) = match acct.split_once('@') {
        Some((user, domain)) if domain != shared.authority => (user, Some(domain)),
        Some((user, _)) => (user, None),
        None => (acct, None),
    };
    if domain.is_none()
        && let Some(local) = inner
            .accounts
            .values()
            .find(|a| a.username.eq_ignore_ascii_case(username))
    {
        return account_json(shared, inner, local, false);
    }
    let domain = domain.unwrap_or(&shared.authority);
    let synthetic_id = acct.bytes().fold(1_000_000_007_u64, |h, b| {
        h.wrapping_mul(31).wrapping_add(u64::from(b))
    }) % 1_000_000_000_000;
    json!({
        "id": synthetic_id.to_string(),
        "username": username,
        "acct": format!("{username}@{domain}"),
        "display_name": username,
        "locked": false,
        "bot": false,
        "discoverable": true,
        "indexable": false,
        "group": false,
        "created_at": millis(Utc::now().date_naive().and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or_else(Utc::now)),
        "note": "",
        "url": format!("https://{domain}/@{username}"),
        "uri": format!("https://{domain}/users/{username}"),
        "avatar": format!("{}/avatars/original/missing.png", shared.base),
        "avatar_static": format!("{}/avatars/original/missing.png", shared.base),
        "header": format!("{}/headers/original/missing.png", shared.base),
        "header_static": format!("{}/headers/original/missing.png", shared.base),
        "followers_count": 0,
        "following_count": 0,
        "statuses_count": 0,
        "last_status_at": null,
        "hide_collections": null,
        "emojis": [],
        "roles": [],
        "fields": [],
    })
}

pub(super) fn status_json(shared: &Shared, inner: &Inner, status: &Status) -> Value {
    let base = &shared.base;
    let Some(account) = inner.accounts.get(&status.account_id) else {
        return Value::Null;
    };
    let reblog = status
        .reblog_of
        .and_then(|id| inner.statuses.get(&id))
        .map(|original| status_json(shared, inner, original))
        .unwrap_or(Value::Null);
    let username = &account.username;
    let (uri, url) = if status.reblog_of.is_some() {
        let activity = format!("{base}/users/{username}/statuses/{}/activity", status.id);
        (activity, Value::Null)
    } else {
        (
            format!("{base}/users/{username}/statuses/{}", status.id),
            json!(format!("{base}/@{username}/{}", status.id)),
        )
    };
    let media: Vec<Value> = status
        .media
        .iter()
        .map(|(id, blurhash)| {
            let path = format!("{base}/system/media_attachments/files/{id}");
            json!({
                "id": id.to_string(),
                "type": "image",
                "url": format!("{path}/original/{id}.png"),
                "preview_url": format!("{path}/small/{id}.png"),
                "remote_url": null,
                "preview_remote_url": null,
                "text_url": null,
                "meta": {
                    "original": {"width": 640, "height": 480, "size": "640x480", "aspect": 1.3333333333333333},
                    "small": {"width": 400, "height": 300, "size": "400x300", "aspect": 1.3333333333333333},
                },
                "description": null,
                "blurhash": blurhash,
            })
        })
        .collect();
    let tags: Vec<Value> = hashtags(&status.content)
        .into_iter()
        .map(|name| json!({"name": name, "url": format!("{base}/tags/{}", encode_path(&name))}))
        .collect();
    let mut json = json!({
        "id": status.id.to_string(),
        "created_at": millis(status.created_at),
        "in_reply_to_id": status.in_reply_to.as_ref().map(|(id, _)| id.to_string()),
        "in_reply_to_account_id": status.in_reply_to.as_ref().map(|(_, account)| account.clone()),
        "sensitive": false,
        "spoiler_text": "",
        "visibility": "public",
        "language": if status.reblog_of.is_some() { Value::Null } else { json!("en") },
        "uri": uri,
        "url": url,
        "replies_count": inner.statuses.values().filter(|s| s.in_reply_to.as_ref().is_some_and(|(id, _)| *id == status.id)).count(),
        "reblogs_count": inner.statuses.values().filter(|s| s.reblog_of == Some(status.id)).count(),
        "favourites_count": 0,
        "quotes_count": 0,
        "edited_at": status.edited_at.map(millis),
        "content": status.content,
        "reblog": reblog,
        "account": account_json(shared, inner, account, true),
        "media_attachments": media,
        "mentions": [],
        "tags": tags,
        "emojis": [],
        "card": null,
        "poll": null,
        "quote": null,
    });
    // Mastodon omits `application` unless the author chose to show it.
    if let Some(name) = &status.application {
        json["application"] = json!({"name": name, "website": null});
    }
    json
}

/// Hashtags as Mastodon's formatter marks them up (`#<span>tag</span>`), lowercased.
pub(super) fn hashtags(html: &str) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for piece in html.split("#<span>").skip(1) {
        if let Some(end) = piece.find("</span>") {
            let tag = html_to_text(&piece[..end]).to_lowercase();
            if !tag.is_empty() && !tags.contains(&tag) {
                tags.push(tag);
            }
        }
    }
    tags
}

/// Recovers the source text Mastodon returns on deletion (for delete-and-redraft).
pub(super) fn html_to_text(html: &str) -> String {
    let with_breaks = html
        .replace("</p><p>", "\n\n")
        .replace("<br />", "\n")
        .replace("<br/>", "\n")
        .replace("<br>", "\n");
    let mut text = String::new();
    let mut in_tag = false;
    for c in with_breaks.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}
