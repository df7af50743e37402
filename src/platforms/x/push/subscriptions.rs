//! The subscriptions that make X deliver the accounts' posts to the webhook.

use super::*;

/// Asks X to run the CRC check on the webhook now (`PUT /2/webhooks/:id`): X disables a
/// webhook that failed one (tocsin down, say) and delivers nothing to it until one passes.
pub(super) async fn recheck(http: &reqwest::Client, webhook_id: &str, account: &Account) {
    let Some(token) = &account.token else {
        return;
    };
    let Ok(url) = account.base_url.join(&format!("2/webhooks/{webhook_id}")) else {
        return;
    };
    let sent = http.put(url).bearer_auth(token.expose()).send().await;
    match answer::<serde_json::Value>(sent).await {
        Ok(_) => tracing::info!(webhook_id, "X checked the webhook (CRC) and delivers to it"),
        Err(e) => tracing::error!(
            webhook_id,
            error = %e,
            "X's CRC check of the webhook failed: X may deliver nothing (is general.public_url + /hooks/x reachable?)"
        ),
    }
}

/// Subscribes each account; the ones X did not accept, to try again.
pub(super) async fn subscribe<'a>(
    http: &reqwest::Client,
    api: XPushApi,
    webhook_id: &str,
    accounts: Vec<&'a Account>,
) -> Vec<&'a Account> {
    let mut failed = Vec::new();
    for account in accounts {
        let result = match api {
            XPushApi::Activity => subscribe_activity(http, webhook_id, account).await,
            XPushApi::AccountActivity => {
                subscribe_account_activity(http, webhook_id, account).await
            }
        };
        match result {
            Ok(()) => tracing::info!(
                account = %account.name,
                api = api.as_str(),
                webhook_id,
                "X pushes this account's posts and deletions"
            ),
            Err(e) => {
                tracing::error!(account = %account.name, api = api.as_str(), error = %e, "X refused to push this account: polling only until it accepts");
                failed.push(account);
            }
        }
    }
    failed
}

#[derive(Debug, Deserialize)]
pub(super) struct SubscriptionList {
    #[serde(default)]
    data: Vec<Subscription>,
    #[serde(default)]
    meta: ListMeta,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ListMeta {
    #[serde(default)]
    next_token: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Subscription {
    event_type: String,
    #[serde(default)]
    filter: Option<SubscriptionFilter>,
    #[serde(default)]
    webhook_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct SubscriptionFilter {
    #[serde(default)]
    user_id: Option<String>,
}

/// `post.create` and `post.delete` for the account on the webhook, unless X has them already.
pub(super) async fn subscribe_activity(
    http: &reqwest::Client,
    webhook_id: &str,
    account: &Account,
) -> Result<(), String> {
    let token = account
        .token
        .as_ref()
        .ok_or("no accounts[].token (the app's bearer token)")?;
    let url = account
        .base_url
        .join("2/activity/subscriptions")
        .map_err(|e| e.to_string())?;
    let mut have = HashSet::new();
    let mut page: Option<String> = None;
    loop {
        let mut req = http
            .get(url.clone())
            .bearer_auth(token.expose())
            .query(&[("max_results", "1000")]);
        if let Some(p) = &page {
            req = req.query(&[("pagination_token", p)]);
        }
        let list: SubscriptionList = answer(req.send().await).await?;
        for s in list.data {
            let user = s.filter.and_then(|f| f.user_id);
            if user.as_deref() == Some(account.account_id.as_str())
                && s.webhook_id.as_deref() == Some(webhook_id)
            {
                have.insert(s.event_type);
            }
        }
        match list.meta.next_token {
            Some(t) => page = Some(t),
            None => break,
        }
    }
    for event in ACTIVITY_EVENTS.iter().filter(|e| !have.contains(**e)) {
        let body = json!({
            "event_type": event,
            "filter": { "user_id": account.account_id },
            "webhook_id": webhook_id,
            "tag": format!("tocsin {}", account.name),
        });
        let req = http
            .post(url.clone())
            .bearer_auth(token.expose())
            .json(&body);
        answer::<serde_json::Value>(req.send().await).await?;
    }
    Ok(())
}

/// The account's subscription to the webhook, made with its own user token.
pub(super) async fn subscribe_account_activity(
    http: &reqwest::Client,
    webhook_id: &str,
    account: &Account,
) -> Result<(), String> {
    let token = account.write_token.as_ref().ok_or(
        "no accounts[].write_token: the Account Activity API subscribes with the account's user token",
    )?;
    let url = account
        .base_url
        .join(&format!(
            "2/account_activity/webhooks/{webhook_id}/subscriptions/all"
        ))
        .map_err(|e| e.to_string())?;
    let resp = http
        .post(url)
        .bearer_auth(token.expose())
        .json(&json!({}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    match resp.status() {
        // Already subscribed.
        StatusCode::CONFLICT => Ok(()),
        s if s.is_success() => Ok(()),
        s => Err(format!(
            "{s}: {}",
            crate::model::cut(&resp.text().await.unwrap_or_default(), 200)
        )),
    }
}

pub(super) async fn answer<T: serde::de::DeserializeOwned>(
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, String> {
    let resp = sent.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!("{status}: {}", crate::model::cut(&body, 200)));
    }
    serde_json::from_str(&body).map_err(|e| format!("{e}: {}", crate::model::cut(&body, 200)))
}
