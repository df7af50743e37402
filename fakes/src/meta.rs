//! A stand-in for Meta's Graph API on 127.0.0.1, for Facebook Pages and Instagram professional
//! accounts, and the webhook sender Meta runs for Pages.
//!
//! Graph side, as Meta's reference pages describe it (developers.facebook.com/docs/graph-api/
//! reference/page, …/page/feed, …/post, …/instagram-platform/reference/ig-user, …/ig-user/media,
//! …/graph-api/guides/error-handling): every path starts with the API version; `GET /{id}`
//! answers only the `fields` asked for (a Page, an Instagram user, a post or a media object);
//! `GET /{id}/feed` and `GET /{id}/media` answer `{"data": [...], "paging": {"cursors":
//! {"before", "after"}, "next"}}` newest first; times are written `2024-05-01T10:00:00+0000`;
//! `DELETE /{post-id}` answers `{"success": true}`. Tokens come as a bearer header or an
//! `access_token` parameter; a missing, unknown or revoked token is refused as Graph does, with
//! HTTP 400 and `{"error": {"type": "OAuthException", "code": 190, …}}`; a missing object is
//! code 100 subcode 33. Every answer carries `X-Business-Use-Case-Usage` with the usage set by
//! the test.
//!
//! Webhook side (developers.facebook.com/docs/graph-api/webhooks/getting-started):
//! [`FakeGraph::subscribe`] runs the verification GET (`hub.mode=subscribe`,
//! `hub.verify_token`, `hub.challenge`, the challenge echoed back), after which each Page post
//! and Page field change is POSTed as `{"object": "page", "entry": [{"id", "time",
//! "changes": [{"field", "value"}]}]}` with `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of
//! the body, keyed with the app secret>`.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::{net::TcpListener, sync::watch};

/// A Facebook Page.
#[derive(Debug, Clone, Default)]
pub struct FakePage {
    pub name: String,
    pub username: String,
    pub about: String,
    pub website: String,
    pub picture: String,
}

/// An Instagram professional account.
#[derive(Debug, Clone, Default)]
pub struct FakeIgUser {
    pub username: String,
    pub name: String,
    pub biography: String,
    pub website: String,
    pub profile_picture_url: String,
}

#[derive(Debug, Clone)]
struct Post {
    id: String,
    owner: String,
    from: (String, String),
    message: String,
    created: DateTime<Utc>,
    application: Option<(String, String)>,
    link: Option<String>,
}

#[derive(Debug, Clone)]
struct Media {
    id: String,
    owner: String,
    caption: String,
    media_type: String,
    created: DateTime<Utc>,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: String,
    pub at: Instant,
    pub status: u16,
}

/// One webhook delivery as sent, and the daemon's answer.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub body: String,
    pub sent_at: Instant,
    pub status: u16,
}

struct Subscription {
    callback: String,
    app_secret: String,
}

#[derive(Default)]
struct Inner {
    pages: HashMap<String, FakePage>,
    ig_users: HashMap<String, FakeIgUser>,
    posts: Vec<Post>,
    media: Vec<Media>,
    /// Token → the ids it may read.
    readers: HashMap<String, HashSet<String>>,
    /// Token → the ids whose posts it may delete.
    writers: HashMap<String, HashSet<String>>,
    revoked: HashSet<String>,
    calls: Vec<Call>,
    deliveries: Vec<Delivery>,
    subscription: Option<Subscription>,
    usage_percent: u64,
    last_time: Option<DateTime<Utc>>,
    next_id: u64,
}

/// The fake Graph API and webhook sender.
#[derive(Clone)]
pub struct FakeGraph {
    shared: Arc<Shared>,
}

struct Shared {
    url: url::Url,
    version: String,
    inner: Mutex<Inner>,
    http: reqwest::Client,
    _stop: watch::Sender<bool>,
}

impl FakeGraph {
    /// Starts the fake serving `version` (`v21.0`) on a free loopback port.
    pub async fn start(version: &str) -> std::io::Result<FakeGraph> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            url: url::Url::parse(&format!("http://{addr}/")).expect("loopback URL"),
            version: version.to_owned(),
            inner: Mutex::new(Inner {
                next_id: 1_000,
                ..Inner::default()
            }),
            http: reqwest::Client::new(),
            _stop: stop,
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        crate::spawn_server(listener, app, stopped, "graph");
        Ok(FakeGraph { shared })
    }

    pub fn url(&self) -> url::Url {
        self.shared.url.clone()
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.shared.inner.lock().expect("graph lock")
    }

    pub fn add_page(&self, id: &str, page: FakePage) {
        self.inner().pages.insert(id.into(), page);
    }

    pub fn add_ig_user(&self, id: &str, user: FakeIgUser) {
        self.inner().ig_users.insert(id.into(), user);
    }

    /// `token` may read `id` (a Page token reads its Page, an Instagram token its account).
    pub fn grant_read(&self, token: &str, id: &str) {
        self.inner()
            .readers
            .entry(token.into())
            .or_default()
            .insert(id.into());
    }

    /// `token` may delete the posts of Page `id` (`pages_manage_posts`).
    pub fn grant_write(&self, token: &str, id: &str) {
        self.inner()
            .writers
            .entry(token.into())
            .or_default()
            .insert(id.into());
    }

    /// The token stops working, as after a password change (code 190, subcode 460).
    pub fn revoke(&self, token: &str) {
        self.inner().revoked.insert(token.into());
    }

    /// The usage every answer reports in `X-Business-Use-Case-Usage`, in percent.
    pub fn set_usage(&self, percent: u64) {
        self.inner().usage_percent = percent;
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner().calls.clone()
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner().deliveries.clone()
    }

    /// Whether post `id` is still up.
    pub fn has_post(&self, id: &str) -> bool {
        self.inner().posts.iter().any(|p| p.id == id)
    }

    /// A time later than every one handed out before: Graph writes whole seconds, and posts of
    /// one test must keep their order.
    fn tick(inner: &mut Inner) -> DateTime<Utc> {
        let now = Utc::now();
        let t = match inner.last_time {
            Some(last) if last + ChronoDuration::seconds(1) > now => {
                last + ChronoDuration::seconds(1)
            }
            _ => now,
        };
        let t = DateTime::from_timestamp(t.timestamp(), 0).expect("whole seconds");
        inner.last_time = Some(t);
        t
    }

    /// The Page publishes a post from `application` (`Some("Meta Business Suite")`); its id,
    /// `PAGEID_POSTID`. Delivered to the webhook when subscribed.
    pub async fn publish(&self, page: &str, message: &str, application: Option<&str>) -> String {
        self.publish_as(page, page, message, application, None)
            .await
    }

    /// A post with a link attachment (`unshimmed_url`).
    pub async fn publish_link(&self, page: &str, message: &str, link: &str) -> String {
        self.publish_as(page, page, message, None, Some(link)).await
    }

    /// A visitor's post on the Page's feed.
    pub async fn visitor_post(&self, page: &str, visitor: &str, message: &str) -> String {
        self.publish_as(page, visitor, message, None, None).await
    }

    async fn publish_as(
        &self,
        page: &str,
        from: &str,
        message: &str,
        application: Option<&str>,
        link: Option<&str>,
    ) -> String {
        let (id, value) = {
            let mut inner = self.inner();
            inner.next_id += 1;
            let id = format!("{page}_{}", inner.next_id);
            let created = Self::tick(&mut inner);
            let from_name = inner
                .pages
                .get(from)
                .map_or_else(|| "A visitor".to_owned(), |p| p.name.clone());
            inner.posts.push(Post {
                id: id.clone(),
                owner: page.into(),
                from: (from.into(), from_name.clone()),
                message: message.into(),
                created,
                application: application.map(|a| ("350685531728".to_owned(), a.to_owned())),
                link: link.map(str::to_owned),
            });
            let value = json!({
                "from": { "id": from, "name": from_name },
                "item": "status",
                "post_id": id,
                "verb": "add",
                "published": 1,
                "created_time": created.timestamp(),
                "message": message,
            });
            (id, value)
        };
        self.notify(page, "feed", value).await;
        id
    }

    /// Changes a Page field (`name`, `username`, `about`, `website`, `picture`), delivered as
    /// that field's change when subscribed.
    pub async fn set_page_field(&self, page: &str, field: &str, value: &str) {
        {
            let mut inner = self.inner();
            let p = inner.pages.get_mut(page).expect("known page");
            match field {
                "name" => p.name = value.into(),
                "username" => p.username = value.into(),
                "about" => p.about = value.into(),
                "website" => p.website = value.into(),
                "picture" => p.picture = value.into(),
                other => panic!("no Page field {other}"),
            }
        }
        let value = match field {
            "picture" => json!({ "item": "profile_photo", "verb": "edit", "link": value }),
            _ => json!(value),
        };
        self.notify(page, field, value).await;
    }

    /// The Instagram account publishes media.
    pub fn publish_media(&self, user: &str, caption: &str, media_type: &str) -> String {
        self.add_media(user, caption, media_type, true)
    }

    /// Media published within the same second as the last post or media: Graph's times are
    /// whole seconds, so both carry the same `timestamp`.
    pub fn publish_media_same_second(&self, user: &str, caption: &str, media_type: &str) -> String {
        self.add_media(user, caption, media_type, false)
    }

    fn add_media(&self, user: &str, caption: &str, media_type: &str, tick: bool) -> String {
        let mut inner = self.inner();
        inner.next_id += 1;
        let id = format!("1789{}", inner.next_id);
        let created = match inner.last_time {
            Some(last) if !tick => last,
            _ => Self::tick(&mut inner),
        };
        inner.media.push(Media {
            id: id.clone(),
            owner: user.into(),
            caption: caption.into(),
            media_type: media_type.into(),
            created,
        });
        id
    }

    /// Changes an Instagram account field (`username`, `name`, `biography`, `website`,
    /// `profile_picture_url`).
    pub fn set_ig_field(&self, user: &str, field: &str, value: &str) {
        let mut inner = self.inner();
        let u = inner.ig_users.get_mut(user).expect("known account");
        match field {
            "username" => u.username = value.into(),
            "name" => u.name = value.into(),
            "biography" => u.biography = value.into(),
            "website" => u.website = value.into(),
            "profile_picture_url" => u.profile_picture_url = value.into(),
            other => panic!("no Instagram field {other}"),
        }
    }

    /// Configures the webhook as the App Dashboard does: the verification GET first, and
    /// deliveries only once the challenge came back. The daemon's answer status.
    pub async fn subscribe(&self, callback: &str, verify_token: &str, app_secret: &str) -> u16 {
        let challenge = "1158201444";
        let resp = self
            .shared
            .http
            .get(callback)
            .query(&[
                ("hub.mode", "subscribe"),
                ("hub.challenge", challenge),
                ("hub.verify_token", verify_token),
            ])
            .send()
            .await
            .expect("the callback answers");
        let status = resp.status().as_u16();
        let echoed = resp.text().await.unwrap_or_default();
        if status == 200 && echoed == challenge {
            self.inner().subscription = Some(Subscription {
                callback: callback.into(),
                app_secret: app_secret.into(),
            });
        }
        status
    }

    /// Sends one change of `page` as Meta does, if subscribed.
    async fn notify(&self, page: &str, field: &str, value: Value) {
        let target = {
            let inner = self.inner();
            inner
                .subscription
                .as_ref()
                .map(|s| (s.callback.clone(), s.app_secret.clone()))
        };
        let Some((callback, secret)) = target else {
            return;
        };
        let body = json!({
            "object": "page",
            "entry": [{
                "id": page,
                "time": Utc::now().timestamp(),
                "changes": [{ "field": field, "value": value }],
            }],
        })
        .to_string();
        let signature = sign(&secret, body.as_bytes());
        self.send(&callback, body, Some(signature)).await;
    }

    /// Sends the last delivery again, as Meta does when it did not see the answer.
    pub async fn redeliver_last(&self) -> u16 {
        let (callback, secret, body) = {
            let inner = self.inner();
            let s = inner.subscription.as_ref().expect("subscribed");
            let last = inner.deliveries.last().expect("a delivery");
            (s.callback.clone(), s.app_secret.clone(), last.body.clone())
        };
        let signature = sign(&secret, body.as_bytes());
        self.send(&callback, body, Some(signature)).await
    }

    /// POSTs `body` to `callback` with the signature header given (or none): for forgeries.
    pub async fn send(&self, callback: &str, body: String, signature: Option<String>) -> u16 {
        let mut req = self
            .shared
            .http
            .post(callback)
            .header("content-type", "application/json");
        if let Some(s) = signature {
            req = req.header("x-hub-signature-256", s);
        }
        let sent_at = Instant::now();
        let status = req
            .body(body.clone())
            .send()
            .await
            .map_or(0, |r| r.status().as_u16());
        self.inner().deliveries.push(Delivery {
            body,
            sent_at,
            status,
        });
        status
    }
}

/// `sha256=` + hex HMAC-SHA256 of `body` keyed with `secret`: Meta's `X-Hub-Signature-256`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn graph_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%z").to_string()
}

fn error(status: StatusCode, code: u32, subcode: Option<u32>, message: &str) -> Response {
    let mut e = json!({
        "message": message,
        "type": if code == 190 { "OAuthException" } else { "GraphMethodException" },
        "code": code,
        "fbtrace_id": "AbCdEfGhIjK",
    });
    if let Some(s) = subcode {
        e["error_subcode"] = json!(s);
    }
    (status, axum::Json(json!({ "error": e }))).into_response()
}

/// The top-level names of a `fields` parameter (`a,b{c,d},e` → a, b, e).
fn top_fields(fields: &str) -> Vec<String> {
    let (mut out, mut depth, mut cur) = (Vec::new(), 0, String::new());
    for c in fields.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ if depth == 0 => cur.push(c),
            _ => {}
        }
    }
    out.push(cur);
    out.into_iter().filter(|f| !f.is_empty()).collect()
}

fn only(mut object: Value, fields: &[String]) -> Value {
    if let Value::Object(map) = &mut object {
        map.retain(|k, _| k == "id" || fields.iter().any(|f| f == k));
    }
    object
}

async fn handle(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let response = answer(&s, &method, uri.path(), &query, &headers);
    let status = response.status().as_u16();
    let mut inner = s.inner.lock().expect("graph lock");
    inner.calls.push(Call {
        method: method.to_string(),
        path: uri.path().into(),
        query: uri.query().unwrap_or_default().into(),
        at: Instant::now(),
        status,
    });
    let usage = json!({ "112233": [{
        "type": "pages",
        "call_count": inner.usage_percent,
        "total_cputime": 1,
        "total_time": 1,
        "estimated_time_to_regain_access": 0,
    }]});
    let mut response = response;
    response.headers_mut().insert(
        "x-business-use-case-usage",
        usage.to_string().parse().expect("header value"),
    );
    response
}

fn answer(
    s: &Shared,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Response {
    let mut inner = s.inner.lock().expect("graph lock");
    let Some(rest) = path
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(s.version.as_str()))
        .and_then(|p| p.strip_prefix('/'))
    else {
        return error(
            StatusCode::BAD_REQUEST,
            2500,
            None,
            "Unknown path components: the path must start with the pinned version",
        );
    };
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("OAuth "))
        })
        .map(str::to_owned)
        .or_else(|| query.get("access_token").cloned());
    let Some(token) = token else {
        return error(
            StatusCode::BAD_REQUEST,
            2500,
            None,
            "An active access token must be used to query information about the current user.",
        );
    };
    if inner.revoked.contains(&token) {
        return error(
            StatusCode::BAD_REQUEST,
            190,
            Some(460),
            "Error validating access token: The session has been invalidated because the user changed their password.",
        );
    }
    let fields = top_fields(query.get("fields").map_or("", String::as_str));
    let parts: Vec<&str> = rest.split('/').collect();
    let can_read = |inner: &Inner, id: &str| {
        inner
            .readers
            .get(&token)
            .is_some_and(|ids| ids.contains(id))
    };
    if !inner.readers.contains_key(&token) && !inner.writers.contains_key(&token) {
        return error(
            StatusCode::BAD_REQUEST,
            190,
            None,
            "Invalid OAuth access token - Cannot parse access token",
        );
    }
    match (method.clone(), parts.as_slice()) {
        (Method::GET, [id]) => {
            if let Some(p) = inner.pages.get(*id).filter(|_| can_read(&inner, id)) {
                return axum::Json(only(
                    json!({
                        "id": id, "name": p.name, "username": p.username, "about": p.about,
                        "website": p.website, "picture": { "data": { "url": p.picture, "is_silhouette": false } },
                    }),
                    &fields,
                ))
                .into_response();
            }
            if let Some(u) = inner.ig_users.get(*id).filter(|_| can_read(&inner, id)) {
                return axum::Json(only(
                    json!({
                        "id": id, "username": u.username, "name": u.name, "biography": u.biography,
                        "website": u.website, "profile_picture_url": u.profile_picture_url,
                    }),
                    &fields,
                ))
                .into_response();
            }
            if let Some(m) = inner
                .media
                .iter()
                .find(|m| m.id == *id && can_read(&inner, &m.owner))
            {
                return axum::Json(only(media_json(m), &fields)).into_response();
            }
            error(
                StatusCode::BAD_REQUEST,
                100,
                Some(33),
                "Unsupported get request. Object does not exist or cannot be loaded due to missing permissions.",
            )
        }
        (Method::GET, [id, edge @ ("feed" | "media")]) if can_read(&inner, id) => {
            let items: Vec<(String, Value)> = if *edge == "feed" {
                inner
                    .posts
                    .iter()
                    .rev()
                    .filter(|p| p.owner == *id)
                    .map(|p| (p.id.clone(), only(post_json(p), &fields)))
                    .collect()
            } else {
                inner
                    .media
                    .iter()
                    .rev()
                    .filter(|m| m.owner == *id)
                    .map(|m| (m.id.clone(), only(media_json(m), &fields)))
                    .collect()
            };
            let limit: usize = query
                .get("limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(25)
                .clamp(1, 100);
            let start = match query.get("after") {
                Some(after) => match items.iter().position(|(i, _)| i == after) {
                    Some(i) => i + 1,
                    None => {
                        return error(StatusCode::BAD_REQUEST, 100, None, "Invalid after cursor");
                    }
                },
                None => 0,
            };
            let page: Vec<_> = items.iter().skip(start).take(limit).collect();
            let mut body =
                json!({ "data": page.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>() });
            if let (Some(first), Some(last)) = (page.first(), page.last()) {
                body["paging"] = json!({ "cursors": { "before": first.0, "after": last.0 } });
                if start + page.len() < items.len() {
                    body["paging"]["next"] = json!(format!(
                        "{}{}/{}/{edge}?after={}&limit={limit}",
                        s.url, s.version, id, last.0
                    ));
                }
            }
            axum::Json(body).into_response()
        }
        (Method::DELETE, [id]) => {
            let Some(i) = inner.posts.iter().position(|p| p.id == *id) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    100,
                    Some(33),
                    "Unsupported delete request. Object does not exist or cannot be loaded due to missing permissions.",
                );
            };
            let owner = inner.posts[i].owner.clone();
            if !inner
                .writers
                .get(&token)
                .is_some_and(|ids| ids.contains(&owner))
            {
                return error(
                    StatusCode::FORBIDDEN,
                    200,
                    None,
                    "(#200) The user hasn't authorized the application to perform this action",
                );
            }
            inner.posts.remove(i);
            axum::Json(json!({ "success": true })).into_response()
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            100,
            Some(33),
            "Unsupported request. Object does not exist or cannot be loaded due to missing permissions.",
        ),
    }
}

fn post_json(p: &Post) -> Value {
    let mut v = json!({
        "id": p.id,
        "created_time": graph_time(p.created),
        "permalink_url": format!("https://www.facebook.com/{}/posts/{}", p.owner, p.id.rsplit('_').next().unwrap_or_default()),
        "from": { "id": p.from.0, "name": p.from.1 },
    });
    if !p.message.is_empty() {
        v["message"] = json!(p.message);
    }
    if let Some((id, name)) = &p.application {
        v["application"] = json!({ "category": "Business", "link": "https://business.facebook.com/", "name": name, "id": id });
    }
    if let Some(link) = &p.link {
        v["attachments"] = json!({ "data": [{ "media_type": "link", "unshimmed_url": link, "target": { "url": format!("https://l.facebook.com/l.php?u={link}") } }] });
    }
    v
}

fn media_json(m: &Media) -> Value {
    json!({
        "id": m.id,
        "caption": m.caption,
        "media_type": m.media_type,
        "media_url": format!("https://scontent.cdninstagram.com/v/{}.jpg?oh=rotating", m.id),
        "permalink": format!("https://www.instagram.com/p/C{}/", m.id),
        "timestamp": graph_time(m.created),
    })
}
