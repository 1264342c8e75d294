//! The sandbox against the `hostile` module: every misbehaviour stops with its typed error, the
//! guest sees no files, environment or network, and a normal call succeeds right after each.

use easyrpc::runtime::{
    CallError, CallLimits, InstanceReuse, Module, WarmInstances, MAX_WARM_MEMORY, WARM_PER_NAMESPACE,
};
use easyrpc::value::Value;
use easyrpc_tests::{j, load, v};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn limits(deadline_ms: u64, memory_mib: usize) -> CallLimits {
    CallLimits { deadline: Duration::from_millis(deadline_ms), memory: memory_mib << 20, ..CallLimits::default() }
}

async fn call(m: &Arc<Module>, name: &str, args: &str, limits: CallLimits) -> Result<Value, CallError> {
    let Value::List(args) = v(args) else { panic!("args must be a list") };
    m.call(name, args, vec![], limits).await
}

async fn still_serves(m: &Arc<Module>) {
    assert_eq!(call(m, "ok", "[]", CallLimits::default()).await.unwrap(), Value::Str("ok".into()));
}

#[tokio::test]
async fn infinite_loop_stops_within_twice_its_deadline() {
    let hostile = load("hostile");
    let started = Instant::now();
    let e = call(&hostile, "spin", "[]", limits(300, 64)).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, CallError::Timeout { .. }), "{e}");
    assert!(took < Duration::from_millis(600), "stopped after {took:?}");
    assert!(e.to_string().contains("exceeded its deadline of 300ms"), "{e}");
    still_serves(&hostile).await;
}

#[tokio::test]
async fn memory_bomb_stops_at_its_cap() {
    let hostile = load("hostile");
    let e = call(&hostile, "memory_bomb", "[]", limits(5000, 32)).await.unwrap_err();
    match &e {
        CallError::OutOfMemory { limit, .. } => assert_eq!(*limit, 32 << 20),
        other => panic!("expected out of memory, got {other}"),
    }
    still_serves(&hostile).await;
}

#[tokio::test]
async fn deep_recursion_is_a_stack_overflow() {
    let hostile = load("hostile");
    let e = call(&hostile, "recurse", "[0]", limits(5000, 64)).await.unwrap_err();
    assert!(matches!(e, CallError::StackOverflow { .. }), "{e}");
    still_serves(&hostile).await;
    // Frames in linear memory overflow the guest's own stack first: a trap, reported as such.
    let e = call(&hostile, "recurse_in_memory", "[0]", limits(5000, 64)).await.unwrap_err();
    assert!(e.to_string().contains("stack overflowed"), "{e}");
    still_serves(&hostile).await;
}

#[tokio::test]
async fn a_panic_reports_its_message() {
    let hostile = load("hostile");
    let e = call(&hostile, "panic", r#"["the guest gave up"]"#, CallLimits::default()).await.unwrap_err();
    match &e {
        CallError::Panic { message, .. } => assert_eq!(message, "the guest gave up"),
        other => panic!("expected a panic, got {other}"),
    }
    assert_eq!(e.to_string(), "panic panicked: the guest gave up");
    still_serves(&hostile).await;
}

#[tokio::test]
async fn the_guest_sees_no_files_environment_or_network() {
    let hostile = load("hostile");
    std::env::set_var("EASYRPC_SECRET_FOR_TEST", "leak");
    let e = call(&hostile, "read_file", r#"["/etc/passwd"]"#, CallLimits::default()).await.unwrap_err();
    assert!(matches!(e, CallError::Failed { .. }), "{e}");
    let e = call(&hostile, "list_root", "[]", CallLimits::default()).await.unwrap_err();
    assert!(matches!(e, CallError::Failed { .. }), "{e}");
    let env = call(&hostile, "read_env", r#"["EASYRPC_SECRET_FOR_TEST"]"#, CallLimits::default()).await.unwrap();
    assert_eq!(j(&env), "[null,[],[]]");
    let e = call(&hostile, "connect", "[9]", CallLimits::default()).await.unwrap_err();
    assert!(matches!(e, CallError::Failed { .. }), "{e}");
    still_serves(&hostile).await;
}

#[tokio::test]
async fn many_hostile_calls_at_once_leave_the_host_serving() {
    let hostile = load("hostile");
    let mut tasks = Vec::new();
    for i in 0..24 {
        let h = hostile.clone();
        tasks.push(tokio::spawn(async move {
            let name = ["spin", "memory_bomb", "recurse", "panic"][i % 4];
            let args = if name == "recurse" {
                "[0]"
            } else if name == "panic" {
                r#"["x"]"#
            } else {
                "[]"
            };
            call(&h, name, args, limits(300, 16)).await
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().is_err());
    }
    still_serves(&hostile).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_gets_an_instance_no_call_used_before() {
    // `bump` counts its calls in a global. The host instantiates sandboxes ahead of calls and
    // tears used ones down after them; neither may hand a call an instance another call used.
    let hostile = load("hostile");
    for _ in 0..50 {
        assert_eq!(call(&hostile, "bump", "[]", CallLimits::default()).await.unwrap(), Value::Int(1));
    }
    let mut calls = Vec::new();
    for _ in 0..200 {
        let hostile = hostile.clone();
        calls.push(tokio::spawn(async move { call(&hostile, "bump", "[]", CallLimits::default()).await }));
    }
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), Value::Int(1));
    }
    // A call that failed poisons only its own instance; the next call starts clean.
    call(&hostile, "spin", "[]", limits(50, 64)).await.unwrap_err();
    assert_eq!(call(&hostile, "bump", "[]", CallLimits::default()).await.unwrap(), Value::Int(1));
}

async fn call_in(
    m: &Arc<Module>,
    warm: &WarmInstances,
    name: &str,
    args: &str,
    limits: CallLimits,
) -> Result<Value, CallError> {
    let Value::List(args) = v(args) else { panic!("args must be a list") };
    m.call_in(Some(warm), name, args, vec![], limits).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reusing_namespace_keeps_state_only_in_sound_instances_of_its_own() {
    // `bump` counts its calls in a global: with reuse it counts on while calls land in one kept
    // instance, and starts again at 1 in any instance no call used.
    let hostile = load("hostile");
    let reused = |max_calls| WarmInstances::for_policy(&hostile, InstanceReuse::Reused { max_calls }).expect("kept");
    let (warm, other_tenant, short) = (reused(100), reused(100), reused(2));
    assert!(WarmInstances::for_policy(&hostile, InstanceReuse::Fresh).is_none());
    // Every call of `warm` runs with the same limits, as a namespace's calls do.
    let limits = limits(300, 32);
    let run = |warm: &Arc<WarmInstances>, function: &'static str, args: String| {
        let (hostile, warm) = (hostile.clone(), warm.clone());
        async move { call_in(&hostile, &warm, function, &args, limits).await }
    };
    let bump = |warm: &Arc<WarmInstances>| {
        let call = run(warm, "bump", "[]".into());
        async move { call.await.unwrap() }
    };
    assert_eq!(bump(&warm).await, Value::Int(1));
    assert_eq!(bump(&warm).await, Value::Int(2));
    assert_eq!(bump(&warm).await, Value::Int(3));
    // Another namespace's calls never run in this namespace's instances, nor do fresh calls.
    assert_eq!(bump(&other_tenant).await, Value::Int(1));
    assert_eq!(call(&hostile, "bump", "[]", limits).await.unwrap(), Value::Int(1));
    // An instance serves at most max_calls calls.
    assert_eq!(bump(&short).await, Value::Int(1));
    assert_eq!(bump(&short).await, Value::Int(2));
    assert_eq!(bump(&short).await, Value::Int(1));
    // A function that returns its error value leaves a sound instance: it stays in use.
    let e = run(&warm, "read_file", r#"["/etc/passwd"]"#.into()).await.unwrap_err();
    assert!(matches!(e, CallError::Failed { .. }), "{e}");
    assert_eq!(bump(&warm).await, Value::Int(4));
    // A panic, a timeout or running out of memory ends the instance: the next call starts clean.
    for (function, args) in [("panic", r#"["boom"]"#), ("spin", "[]"), ("memory_bomb", "[]")] {
        assert_ne!(bump(&warm).await, Value::Int(1), "before {function}: the kept instance serves");
        let e = run(&warm, function, args.into()).await.unwrap_err();
        assert!(
            matches!(e, CallError::Panic { .. } | CallError::Timeout { .. } | CallError::OutOfMemory { .. }),
            "{e}"
        );
        assert_eq!(bump(&warm).await, Value::Int(1), "after {function}");
    }
    // An instance whose memory grew past MAX_WARM_MEMORY is not kept.
    assert_eq!(run(&warm, "hoard", "[1]".into()).await.unwrap(), Value::Int(2));
    assert_eq!(bump(&warm).await, Value::Int(3), "1 MiB more is still a small instance");
    let big = (MAX_WARM_MEMORY >> 20) + 1;
    assert_eq!(run(&warm, "hoard", format!("[{big}]")).await.unwrap(), Value::Int(4));
    assert_eq!(bump(&warm).await, Value::Int(1));
    // Other limits (the namespace's were changed, say) start afresh too.
    assert_eq!(call_in(&hostile, &warm, "bump", "[]", CallLimits::default()).await.unwrap(), Value::Int(1));
    // Concurrent calls each run in an instance of their own; a few are kept afterwards.
    let calls: Vec<_> = (0..50).map(|_| tokio::spawn(run(&warm, "hoard", "[0]".into()))).collect();
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert!((1..=WARM_PER_NAMESPACE).contains(&warm.idle()), "{} idle", warm.idle());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_instances_stay_a_small_share_of_the_pool() {
    use easyrpc::runtime::{Runtime, RuntimeConfig};
    // 100 instances: at most 4 may be kept idle, however many namespaces reuse them.
    let runtime = Runtime::new(RuntimeConfig { max_instances: 100, ..Default::default() }).unwrap();
    let math = runtime.load_file(easyrpc_tests::module_path("math")).unwrap();
    let namespaces: Vec<Arc<WarmInstances>> =
        (0..5).map(|_| WarmInstances::for_policy(&math, InstanceReuse::reused()).unwrap()).collect();
    for _ in 0..3 {
        let mut calls = Vec::new();
        for warm in namespaces.iter().chain(&namespaces) {
            let (math, warm) = (math.clone(), warm.clone());
            calls
                .push(tokio::spawn(async move { call_in(&math, &warm, "add", "[1, 2]", CallLimits::default()).await }));
        }
        for c in calls {
            assert_eq!(c.await.unwrap().unwrap(), Value::Int(3));
        }
    }
    assert!((1..=4).contains(&runtime.warm_instances()), "{} kept", runtime.warm_instances());
    drop(namespaces);
    assert_eq!(runtime.warm_instances(), 0, "a namespace's functions, once gone, give their instances back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_sandboxes_stay_a_small_share_of_the_pool() {
    use easyrpc::runtime::{Runtime, RuntimeConfig};
    // 100 instances: at most 2 may wait ready, however many modules are called.
    let runtime = Runtime::new(RuntimeConfig { max_instances: 100, ..Default::default() }).unwrap();
    let modules: Vec<(Arc<Module>, &str, &str)> =
        [("math", "add", "[1, 2]"), ("peer", "add", "[1]"), ("hostile", "bump", "[]")]
            .into_iter()
            .map(|(m, f, a)| (runtime.load_file(easyrpc_tests::module_path(m)).unwrap(), f, a))
            .collect();
    for _ in 0..20 {
        for (module, function, args) in &modules {
            call(module, function, args, CallLimits::default()).await.unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = runtime.ready_sandboxes();
    assert!((1..=2).contains(&ready), "{ready} ready sandboxes");
    drop(modules);
    assert_eq!(runtime.ready_sandboxes(), 0, "a dropped module gives its ready sandboxes back");
}

#[tokio::test]
async fn instances_made_in_a_renewed_store_start_clean() {
    use easyrpc::runtime::{Runtime, RuntimeConfig};
    // When calls come faster than ready instances are made, the next instance is made in a used
    // one's store: by a refill, or (refills far behind) by the next call itself. Here one task
    // calls back to back on a current-thread runtime, so refills run only when it yields, every
    // tenth call: both happen. `bump` counts its calls in a global and hostile is a WASI guest
    // (its WASI context must start afresh too): every call must still answer 1. 100 instances:
    // at most 2 may be retired in renewed stores at once.
    let runtime = Runtime::new(RuntimeConfig { max_instances: 100, ..Default::default() }).unwrap();
    let hostile = runtime.load_file(easyrpc_tests::module_path("hostile")).unwrap();
    let mut renewed_seen = false;
    for i in 0..300 {
        assert_eq!(
            call(&hostile, "bump", "[]", CallLimits::default()).await.unwrap(),
            Value::Int(1),
            "call {i} saw an earlier call's state"
        );
        let retired = runtime.retired_instances();
        assert!(retired <= 2, "{retired} retired instances");
        renewed_seen |= retired > 0;
        if i % 10 == 9 {
            tokio::task::yield_now().await;
        }
    }
    assert!(renewed_seen, "no store was renewed: the test did not test it");
    still_serves(&hostile).await;
    drop(hostile);
    // Refills still pending hold the module a little longer.
    for _ in 0..50 {
        if runtime.retired_instances() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(runtime.retired_instances(), 0, "dropped stores give their retired instances' room back");
}
