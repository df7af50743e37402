//! The demo's last act: a YouTube channel taken over, renamed and streaming a "giveaway",
//! and one press taking the broadcast down.

use super::*;

/// The fake YouTube with the company's channel, and its account in `config`: read with an API
/// key, pushed by the fake hub through a reverse proxy on loopback (`general.public_url`) that
/// forwards to the daemon once it listens, taken down with the owner's token.
pub(super) async fn youtube_channel(
    config: &mut tocsin::Config,
) -> Result<(FakeYouTube, Front), DemoError> {
    let yt = FakeYouTube::start(YT_KEY)
        .await
        .map_err(setup("starting the fake YouTube"))?;
    yt.add_channel(
        YT_CHANNEL,
        "ExampleCorp",
        "@examplecorp",
        "The official ExampleCorp channel.",
    );
    yt.set_oauth_token(YT_CHANNEL, Some(YT_OWNER_TOKEN));
    yt.upload(YT_CHANNEL, "ExampleCorp 2025 keynote", "The full keynote.")
        .await;
    let front = Front::start()
        .await
        .map_err(setup("starting the reverse proxy"))?;
    config.general.public_url = Some(front.url());
    config.youtube.api_key = Some(tocsin::config::Secret::new(YT_KEY));
    config.youtube.hub_url = yt.hub_url();
    // The demo's half-second polls need more than a real project's 10,000 units a day.
    config.youtube.daily_quota = 1_000_000;
    config.accounts.push(tocsin::config::Account {
        name: YT_ACCOUNT.into(),
        platform: tocsin::config::Platform::YouTube,
        base_url: yt.url(),
        account_id: YT_CHANNEL.into(),
        token: None,
        write_token: Some(tocsin::config::Secret::new(YT_OWNER_TOKEN)),
        poll_interval: POLL,
        grace: None,
        plc_url: None,
        jetstream_url: None,
        pds_url: None,
        appview_url: None,
        allow_private_endpoints: true,
        trusted_clients: Vec::new(),
    });
    Ok((yt, front))
}

/// The YouTube takeover: the channel renamed, a live giveaway, one press to take it down. The
/// pages of the rename and of the broadcast.
pub(super) async fn youtube_takeover(
    yt: &FakeYouTube,
    store: &tocsin::store::Store,
    bot_api: &FakeBotApi,
    responder: &FakeUser,
    report: &mut Report,
    say: &impl Fn(&mut Report, String),
) -> Result<(SentMessage, SentMessage), DemoError> {
    yt.set_title(YT_CHANNEL, "Tesla Official LIVE");
    let renamed_at = Instant::now();
    say(
        report,
        "YOUTUBE channel renamed \"Tesla Official LIVE\"".into(),
    );
    let (_, page5) = page_of(store, bot_api, Rule::ProfileChanged, |i| {
        i.account == YT_ACCOUNT
    })
    .await?;
    let rename_latency = page5.received_instant.duration_since(renamed_at);
    report
        .latencies
        .push(("YouTube rename → page".into(), rename_latency));
    say(
        report,
        format!(
            "PAGE 5 (message {}) after {} ms",
            page5.message_id,
            rename_latency.as_millis()
        ),
    );
    report.check(
        "the rename's page shows the new title",
        page5.text.contains("Tesla Official LIVE"),
    );

    let live_at = Instant::now();
    let live = yt
        .go_live(
            YT_CHANNEL,
            "Tesla giveaway LIVE: double your BTC",
            "Send BTC to bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh and get 2x back https://examp1e-giveaway.example",
        )
        .await;
    say(
        report,
        format!("YOUTUBE live broadcast {live} started, pushed by the hub"),
    );
    report.check(
        "the hub's push was taken (204)",
        yt.deliveries().last().is_some_and(|d| d.status == 204),
    );
    let (live_incident, page6) =
        page_of(store, bot_api, Rule::UnapprovedPost, |i| i.object == live).await?;
    let live_latency = page6.received_instant.duration_since(live_at);
    report
        .latencies
        .push(("YouTube live (push) → page".into(), live_latency));
    say(
        report,
        format!(
            "PAGE 6 (message {}) after {} ms",
            page6.message_id,
            live_latency.as_millis()
        ),
    );
    let critical = store
        .incident(live_incident)?
        .is_some_and(|i| i.severity == tocsin::model::Severity::Critical);
    report.check(
        "the live giveaway pages critical",
        critical && page6.text.contains("[live]"),
    );
    bot_api.press_button(
        CHAT,
        responder,
        page6.message_id,
        &format!("takedown:{live_incident}"),
    );
    wait_for(
        || store_state(store, live_incident) == Some(State::Resolved),
        "the YouTube takedown",
    )
    .await?;
    let gone = !yt.video_exists(&live);
    report.check("the live giveaway is deleted on YouTube", gone);
    say(
        report,
        format!(
            "@alice_oncall pressed Take down on #{live_incident}: videos.delete → broadcast gone = {gone}; resolved (contained)"
        ),
    );
    Ok((page5, page6))
}
