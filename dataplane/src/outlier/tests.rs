//! Ejection by streaks, its growing duration, its cap, and the share of an upstream it may take.
//! Time is paused: timers fire when the test sleeps past them.

use std::time::Duration;

use gateway_proto::v1::{Config, OutlierDetection, Target, Upstream};

use super::*;
use crate::table::{RouteTable, compile};

const BASE: Duration = Duration::from_secs(10);

fn table(targets: usize, outlier: OutlierDetection) -> RouteTable {
    let upstream = Upstream {
        name: "web".into(),
        targets: (0..targets)
            .map(|i| Target {
                address: format!("10.0.0.{i}:80"),
                weight: 1,
            })
            .collect(),
        outlier_detection: Some(outlier),
        ..Default::default()
    };
    compile(&Config {
        upstreams: vec![upstream],
        ..Default::default()
    })
    .unwrap()
}

fn detection() -> OutlierDetection {
    OutlierDetection {
        consecutive_5xx: 3,
        consecutive_connect_failures: 2,
        base_ejection_ms: BASE.as_millis() as u32,
        max_ejection_ms: 25_000,
        max_ejected_percent: 50,
    }
}

fn pool(table: &RouteTable) -> &UpstreamPool {
    table.upstreams().next().unwrap()
}

fn hit(pool: &UpstreamPool, target: usize, outcome: Outcome, times: usize) {
    for _ in 0..times {
        observe(pool, &pool.targets[target].state, outcome);
    }
}

/// Sleeps (paused time) past `duration`, letting the return timers run.
async fn pass(duration: Duration) {
    tokio::time::sleep(duration + Duration::from_millis(1)).await;
    tokio::task::yield_now().await;
}

#[tokio::test(start_paused = true)]
async fn a_5xx_streak_ejects_until_the_ejection_ends() {
    let table = table(4, detection());
    let pool = pool(&table);
    hit(pool, 0, Outcome::ServerError, 2);
    assert!(!pool.targets[0].state.is_ejected());
    hit(pool, 0, Outcome::ServerError, 1);
    let health = pool.targets[0].state.health();
    assert!(health.ejected && health.passing_checks);
    assert_eq!(health.reason, "3 consecutive 5xx");
    assert!(!pool.targets[0].is_usable());

    pass(BASE - Duration::from_secs(1)).await;
    assert!(pool.targets[0].state.is_ejected(), "not yet");
    pass(Duration::from_secs(1)).await;
    assert!(!pool.targets[0].state.is_ejected());
    assert_eq!(
        pool.targets[0].state.health().reason,
        "ejection of 10s over"
    );
}

#[tokio::test(start_paused = true)]
async fn a_success_breaks_the_streak_and_kinds_count_apart() {
    let table = table(4, detection());
    let pool = pool(&table);
    hit(pool, 0, Outcome::ServerError, 2);
    hit(pool, 0, Outcome::Success, 1);
    hit(pool, 0, Outcome::ServerError, 2);
    assert!(!pool.targets[0].state.is_ejected());

    hit(pool, 1, Outcome::ConnectFailure, 1);
    hit(pool, 1, Outcome::ServerError, 1);
    assert!(!pool.targets[1].state.is_ejected());
    hit(pool, 1, Outcome::ConnectFailure, 1);
    assert_eq!(
        pool.targets[1].state.health().reason,
        "2 consecutive connection failures"
    );
}

#[tokio::test(start_paused = true)]
async fn each_ejection_lasts_longer_up_to_the_cap() {
    let table = table(4, detection());
    let pool = pool(&table);
    for expected in [BASE, BASE * 2, Duration::from_secs(25)] {
        hit(pool, 0, Outcome::ServerError, 3);
        assert!(pool.targets[0].state.is_ejected());
        pass(expected - Duration::from_millis(2)).await;
        assert!(pool.targets[0].state.is_ejected(), "{expected:?} not over");
        pass(Duration::from_millis(2)).await;
        assert!(!pool.targets[0].state.is_ejected(), "{expected:?} over");
    }
}

#[tokio::test(start_paused = true)]
async fn at_most_max_ejected_percent_of_targets_are_ejected() {
    let table = table(4, detection());
    let pool = pool(&table);
    for target in 0..4 {
        hit(pool, target, Outcome::ServerError, 3);
    }
    let ejected = pool.targets.iter().filter(|t| t.state.is_ejected()).count();
    assert_eq!(ejected, 2, "50% of 4");

    let lone = self::table(1, detection());
    hit(self::pool(&lone), 0, Outcome::ServerError, 10);
    assert!(
        !self::pool(&lone).targets[0].state.is_ejected(),
        "50% of one target is none"
    );
}

#[tokio::test(start_paused = true)]
async fn without_thresholds_nothing_is_watched() {
    let table = table(
        2,
        OutlierDetection {
            consecutive_5xx: 0,
            consecutive_connect_failures: 0,
            ..detection()
        },
    );
    let pool = pool(&table);
    assert!(pool.outlier.is_none() && !pool.is_watched());
    hit(pool, 0, Outcome::ServerError, 100);
    assert!(!pool.targets[0].state.is_ejected());
}

#[tokio::test(start_paused = true)]
async fn turning_detection_off_returns_ejected_targets() {
    let carried = crate::state::CarriedState::default();
    let mut first = table(4, detection());
    carried.adopt(&mut first);
    hit(pool(&first), 0, Outcome::ServerError, 3);
    assert!(pool(&first).targets[0].state.is_ejected());

    let mut second = table(4, OutlierDetection::default());
    carried.adopt(&mut second);
    let health = pool(&second).targets[0].state.health();
    assert!(!health.ejected);
    assert_eq!(health.reason, "outlier detection disabled");
}
