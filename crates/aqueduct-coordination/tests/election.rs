//! Leader election against a real ZooKeeper server.

use std::time::Duration;

use aqueduct_coordination::{Member, MemberConfig, Role};
use aqueduct_testkit::ZooKeeper;
use zookeeper_client as zk;

const SESSION: Duration = Duration::from_secs(4);

fn member(zk: &ZooKeeper, cluster: &str, instance: &str) -> Member {
    Member::start(MemberConfig {
        zookeeper: zk.connect_string(),
        cluster: cluster.to_string(),
        instance: instance.to_string(),
        session_timeout: SESSION,
    })
}

/// Waits until `member` is registered (it has a live-instance node), so a member started after it
/// registers behind it.
async fn registered(member: &Member) {
    let mut sessions = member.watch_session();
    tokio::time::timeout(Duration::from_secs(30), sessions.wait_for(Option::is_some))
        .await
        .expect("registered within 30 s")
        .expect("member running");
}

/// Waits until the members agree: exactly one leader, every other member follows it by name.
async fn settled(members: &[(&str, &Member)], timeout: Duration) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let roles: Vec<(&str, Role)> = members.iter().map(|(n, m)| (*n, m.role())).collect();
        let leaders: Vec<&str> = roles
            .iter()
            .filter(|(_, r)| *r == Role::Leader)
            .map(|(n, _)| *n)
            .collect();
        if let [leader] = leaders[..] {
            let agreed = roles.iter().all(|(n, r)| {
                *n == leader
                    || *r
                        == Role::Follower {
                            leader: leader.to_string(),
                        }
            });
            if agreed {
                return Ok(leader.to_string());
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("no agreement: {roles:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_leader_and_a_successor_when_it_leaves() {
    let zk = ZooKeeper::start().unwrap();
    let a = member(&zk, "leave", "a");
    registered(&a).await;
    let b = member(&zk, "leave", "b");
    let c = member(&zk, "leave", "c");
    let leader = settled(&[("a", &a), ("b", &b), ("c", &c)], Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(leader, "a", "the first to register leads");

    // Leaving closes the session: the successor takes over without waiting for a session timeout.
    let started = tokio::time::Instant::now();
    a.leave().await;
    let leader = settled(&[("b", &b), ("c", &c)], Duration::from_secs(10))
        .await
        .unwrap();
    assert!(leader == "b" || leader == "c");
    assert!(
        started.elapsed() < SESSION,
        "took {:?}, as long as a session timeout",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_leader_rejoins_by_itself_and_one_leader_remains() {
    let zk = ZooKeeper::start().unwrap();
    let a = member(&zk, "expire", "a");
    registered(&a).await;
    let b = member(&zk, "expire", "b");
    let c = member(&zk, "expire", "c");
    let leader = settled(&[("a", &a), ("b", &b), ("c", &c)], Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(leader, "a");

    // Expire a's session: open it a second time, then close that copy (the server ends the session).
    let session = a.session().expect("a has a session");
    let old_id = session.id();
    let mut closed = false;
    for _ in 0..5 {
        let hijack = zk::Client::connector()
            .with_session(session.clone())
            .with_connection_timeout(Duration::from_secs(5))
            .connect(&zk.connect_string())
            .await;
        if let Ok(hijack) = hijack {
            drop(hijack);
            closed = true;
            break;
        }
    }
    assert!(closed, "could not open a's session a second time");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while a.session().map(|s| s.id()) == Some(old_id) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a never noticed its expired session"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The others elect a new leader; a opens a new session and follows.
    let leader = settled(&[("a", &a), ("b", &b), ("c", &c)], Duration::from_secs(20))
        .await
        .unwrap();
    assert_ne!(leader, "a", "a rejoined at the end of the line");
    assert_ne!(
        a.session().map(|s| s.id()),
        Some(old_id),
        "a opened a new session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zookeeper_restart_keeps_sessions_and_the_leader() {
    let mut zk = ZooKeeper::start().unwrap();
    let a = member(&zk, "restart", "a");
    registered(&a).await;
    let b = member(&zk, "restart", "b");
    let leader = settled(&[("a", &a), ("b", &b)], Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(leader, "a");
    let mut roles = a.watch_role();
    let restarted = tokio::task::spawn_blocking(move || {
        zk.restart().unwrap();
        zk
    });
    // While the server is away the leader reports Disconnected (it must not act as leader).
    // (The guard `wait_for` returns must not outlive this statement: it blocks the sender.)
    let disconnected = tokio::time::timeout(
        Duration::from_secs(10),
        roles.wait_for(|r| *r == Role::Disconnected),
    )
    .await
    .is_ok_and(|seen| seen.is_ok());
    assert!(disconnected, "leader never noticed the outage");
    let _zk = restarted.await.unwrap();
    let leader = settled(&[("a", &a), ("b", &b)], Duration::from_secs(20)).await;
    assert_eq!(
        leader.as_deref(),
        Ok("a"),
        "sessions survive a quick server restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_former_leader_cannot_write_an_assignment() {
    use aqueduct_coordination::store::{self, AssignmentSummary, InstanceAssignment};
    use aqueduct_coordination::{CoordinationError, Layout};
    use std::collections::BTreeMap;

    let zk = ZooKeeper::start().unwrap();
    let a = member(&zk, "guard", "a");
    registered(&a).await;
    let b = member(&zk, "guard", "b");
    assert_eq!(
        settled(&[("a", &a), ("b", &b)], Duration::from_secs(10)).await,
        Ok("a".to_string())
    );
    let layout = Layout::new("guard");
    let session = a.current().expect("a is registered");
    let summary = AssignmentSummary {
        generation: 1,
        leader: "a".to_string(),
        ..AssignmentSummary::default()
    };
    let tasks = BTreeMap::from([(
        "b".to_string(),
        InstanceAssignment {
            generation: 1,
            tasks: vec![store::AssignedTask {
                stream: "s".to_string(),
                index: 0,
                count: 1,
            }],
        },
    )]);
    store::write_assignment(&session, &layout, &summary, &tasks)
        .await
        .expect("the leader writes");

    // a loses its place (its live-instance node goes, as on session expiry); b leads now.
    session
        .client
        .delete(&session.live_node, None)
        .await
        .unwrap();
    let mut b_role = b.watch_role();
    let b_leads = tokio::time::timeout(
        Duration::from_secs(10),
        b_role.wait_for(|r| *r == Role::Leader),
    )
    .await
    .is_ok_and(|seen| seen.is_ok());
    assert!(b_leads, "b never took over");
    let leader = settled(&[("a", &a), ("b", &b)], Duration::from_secs(10)).await;
    assert_eq!(leader, Ok("b".to_string()));

    // A write prepared by a in its leadership is refused, and nothing of it lands.
    let stale = AssignmentSummary {
        generation: 2,
        leader: "a".to_string(),
        ..AssignmentSummary::default()
    };
    let emptied = BTreeMap::from([("b".to_string(), InstanceAssignment::default())]);
    let result = store::write_assignment(&session, &layout, &stale, &emptied).await;
    assert!(
        matches!(result, Err(CoordinationError::NotLeader)),
        "{result:?}"
    );
    let assignments = store::instance_assignments(&session.client, &layout)
        .await
        .unwrap();
    assert_eq!(assignments["b"], tasks["b"]);
    assert_eq!(
        store::summary(&session.client, &layout).await.unwrap(),
        Some(summary)
    );
}
