//! Mastodon push: the user stream pages a rogue post without waiting for a poll, reports an
//! approved post's deletion, and a stream that stays down pages `monitor.blind`.

use std::time::Duration;

use tocsin::{
    App,
    config::Secret,
    model::{Action, Rule},
    store::TimelineEntry,
};
use tocsin_fakes::{
    mastodon::{FakeMastodon, status_html},
    telegram::FakeBotApi,
};
use tokio_util::sync::CancellationToken;

use crate::support::*;

const READ: &str = "masto-read-token";

struct Streamed {
    masto: FakeMastodon,
    bot: FakeBotApi,
    store: tocsin::store::Store,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), tocsin::AppError>>,
    _state: tempfile::TempDir,
}

/// The daemon with a token (so it streams) and polls an hour apart: whatever arrives after the
/// first poll came through the stream.
async fn start(page_deletions: bool, grace: Option<Duration>) -> Streamed {
    let masto = FakeMastodon::start().await.unwrap();
    masto.add_account(ACCOUNT_ID, "examplecorp", "ExampleCorp", "<p>hi</p>", &[]);
    masto.require_token(Some(READ.into()));
    let bot = FakeBotApi::start(BOT_TOKEN).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut c = config(state.path(), &bot, &masto);
    c.accounts[0].token = Some(Secret::new(READ));
    c.accounts[0].poll_interval = Duration::from_secs(3600);
    c.accounts[0].grace = grace;
    c.paging.page_approved_deletions = page_deletions;
    let app = App::build(c).await.unwrap();
    let store = app.store().clone();
    let health = app.health().clone();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(app.run_until(shutdown.clone()));
    // The first poll's posts are history: publish only once it has completed.
    until(
        || {
            masto.open_streams() >= 1
                && health.snapshot().get(ACCOUNT).is_some_and(|h| h.polls >= 1)
        },
        "the stream open and the first poll done",
    )
    .await;
    Streamed {
        masto,
        bot,
        store,
        shutdown,
        handle,
        _state: state,
    }
}

impl Streamed {
    fn statuses_polls(&self) -> usize {
        self.masto
            .request_count(&format!("/api/v1/accounts/{ACCOUNT_ID}/statuses"))
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_streamed_post_pages_without_a_poll() {
    let s = start(false, None).await;
    let polls = s.statuses_polls();
    let post = s
        .masto
        .publish(ACCOUNT_ID, &status_html("streamed scam at scam.example"));
    until(
        || {
            s.bot
                .sent()
                .iter()
                .any(|m| m.text.contains("streamed scam"))
        },
        "the page from the stream",
    )
    .await;
    assert_eq!(s.statuses_polls(), polls, "no poll in between");
    let inc = s
        .store
        .incidents()
        .unwrap()
        .into_iter()
        .find(|i| i.object == post)
        .unwrap();
    assert_eq!(inc.rule, Rule::UnapprovedPost);
    // An edit arrives as `status.update`.
    s.masto
        .edit(&post, &status_html("streamed scam at scam2.example"));
    until(
        || {
            s.store
                .incidents()
                .unwrap()
                .iter()
                .any(|i| i.rule == Rule::PostEdited && i.object == post)
        },
        "the edit from the stream",
    )
    .await;
    s.stop().await;
}

#[tokio::test]
async fn an_approved_post_deleted_is_recorded_or_paged_as_configured() {
    for paged in [false, true] {
        let s = start(paged, None).await;
        s.store
            .transact(|tx| {
                tx.append_log(
                    tocsin::store::ApprovedEntry::ApprovedPost {
                        account: ACCOUNT.into(),
                        fingerprint: Some(tocsin::detect::fingerprint(
                            &tocsin::detect::content_from_text("our launch announcement"),
                        )),
                        post_id: None,
                        expires_at: None,
                        by: "test".into(),
                        note: None,
                    },
                    chrono::Utc::now(),
                )
            })
            .unwrap();
        let post = s
            .masto
            .publish(ACCOUNT_ID, &status_html("our launch announcement"));
        until(
            || s.store.seen_post(ACCOUNT, &post).unwrap().is_some(),
            "the approved post seen",
        )
        .await;
        s.masto.delete(&post);
        if paged {
            until(
                || {
                    s.store
                        .incidents()
                        .unwrap()
                        .iter()
                        .any(|i| i.rule == Rule::ApprovedPostDeleted && i.page.is_some())
                },
                "the medium page",
            )
            .await;
        } else {
            until(
                || {
                    s.store.timeline_records().unwrap().iter().any(|r| {
                        r.entry
                            == TimelineEntry {
                                incident: None,
                                account: ACCOUNT.into(),
                                who: "tocsin".into(),
                                action: Action::ApprovedPostDeleted {
                                    post_id: post.clone(),
                                },
                                subject: None,
                            }
                    })
                },
                "the timeline note",
            )
            .await;
            assert!(s.store.incidents().unwrap().is_empty(), "nothing paged");
        }
        s.stop().await;
    }
}

#[tokio::test]
async fn a_stream_down_past_its_grace_pages_monitor_blind_and_recovers() {
    let s = start(false, Some(Duration::from_millis(800))).await;
    s.masto.set_streaming_down(true);
    let key = format!("{ACCOUNT}:stream");
    let blind = |s: &Streamed| {
        s.store
            .incidents()
            .unwrap()
            .into_iter()
            .find(|i| i.rule == Rule::MonitorBlind && i.account == key)
    };
    until(|| blind(&s).is_some(), "monitor.blind for the stream").await;
    s.masto.set_streaming_down(false);
    until(
        || blind(&s).is_some_and(|i| i.resolution.is_some()),
        "resolved once the stream is back",
    )
    .await;
    s.stop().await;
}
