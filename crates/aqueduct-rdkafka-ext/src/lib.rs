//! librdkafka calls that the `rdkafka` crate does not wrap yet. Today one: the topic ids of
//! `DescribeTopics` (KIP-516), which tell a re-created topic from the one it replaced.
//!
//! This is the only crate of the workspace with `unsafe` code (ADR 0007). Each call owns what it creates
//! and frees it on every path; nothing librdkafka returns outlives the event it came with.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, CStr, CString};
use std::time::{Duration, Instant};

use aqueduct_model::topic_id::TopicId;
use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};

/// What a cluster says about one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicLookup {
    /// The topic exists, with its id (`None` from a cluster that gives no ids: Kafka before 2.8).
    Exists(Option<TopicId>),
    /// The cluster has no such topic.
    Missing,
    /// The cluster answered with another error for this topic (for example: not authorized).
    Failed(String),
}

impl TopicLookup {
    /// The topic's id, when it exists and the cluster gave one.
    pub fn id(&self) -> Option<TopicId> {
        match self {
            TopicLookup::Exists(id) => id.clone(),
            _ => None,
        }
    }
}

/// Why a `DescribeTopics` request as a whole failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescribeTopicsError {
    #[error("invalid topic name {0:?}")]
    InvalidName(String),
    #[error("no answer to DescribeTopics within {0:?}")]
    TimedOut(Duration),
    #[error("DescribeTopics failed: {0}")]
    Kafka(String),
}

/// Frees what it holds when dropped.
struct Owned<T> {
    ptr: *mut T,
    free: unsafe extern "C" fn(*mut T),
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: `ptr` came from the librdkafka constructor paired with `free`, and is freed once.
            unsafe { (self.free)(self.ptr) }
        }
    }
}

/// # Safety
/// `text` is null or a NUL-terminated string that lives as long as the returned borrow is used.
unsafe fn text(text: *const c_char) -> String {
    if text.is_null() {
        return String::new();
    }
    // SAFETY: not null and NUL-terminated by the caller's promise.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

/// Asks the cluster `client` is connected to for the ids of `topics`, through a queue of its own (the
/// client's other work is not disturbed). Every topic asked for is in the answer.
pub fn describe_topic_ids<C: ClientContext>(
    client: &Client<C>,
    topics: &[&str],
    timeout: Duration,
) -> Result<BTreeMap<String, TopicLookup>, DescribeTopicsError> {
    let mut answer = BTreeMap::new();
    if topics.is_empty() {
        return Ok(answer);
    }
    let names: Vec<CString> = topics
        .iter()
        .map(|t| CString::new(*t).map_err(|_| DescribeTopicsError::InvalidName(t.to_string())))
        .collect::<Result<_, _>>()?;
    let mut pointers: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
    let rk = client.native_ptr();
    let timeout_ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);

    // SAFETY: `pointers` holds `pointers.len()` NUL-terminated names alive until the call returns (the
    // collection copies them).
    let ptr = unsafe {
        rd::rd_kafka_TopicCollection_of_topic_names(pointers.as_mut_ptr(), pointers.len())
    };
    let collection = Owned {
        ptr,
        free: rd::rd_kafka_TopicCollection_destroy,
    };
    // SAFETY: `rk` is the live handle of `client`, borrowed for this whole function.
    let ptr = unsafe {
        rd::rd_kafka_AdminOptions_new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
        )
    };
    let options = Owned {
        ptr,
        free: rd::rd_kafka_AdminOptions_destroy,
    };
    let mut error = [0 as c_char; 256];
    // SAFETY: `options` is live; `error` is writable for its length.
    unsafe {
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options.ptr,
            timeout_ms,
            error.as_mut_ptr(),
            error.len(),
        );
    }
    // SAFETY: as above for `rk`.
    let ptr = unsafe { rd::rd_kafka_queue_new(rk) };
    let queue = Owned {
        ptr,
        free: rd::rd_kafka_queue_destroy,
    };
    // SAFETY: every argument is live; librdkafka copies the collection and options before returning.
    unsafe { rd::rd_kafka_DescribeTopics(rk, collection.ptr, options.ptr, queue.ptr) };

    let deadline = Instant::now() + timeout + Duration::from_secs(1);
    let event = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(DescribeTopicsError::TimedOut(timeout));
        }
        let wait = c_int::try_from(left.as_millis()).unwrap_or(c_int::MAX);
        // SAFETY: `queue` is live.
        let event = unsafe { rd::rd_kafka_queue_poll(queue.ptr, wait) };
        if !event.is_null() {
            break Owned {
                ptr: event,
                free: rd::rd_kafka_event_destroy,
            };
        }
    };
    // SAFETY: `event` is live until dropped at the end of this function, after the last borrow below.
    unsafe {
        let code = rd::rd_kafka_event_error(event.ptr);
        if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(DescribeTopicsError::Kafka(text(
                rd::rd_kafka_event_error_string(event.ptr),
            )));
        }
        let result = rd::rd_kafka_event_DescribeTopics_result(event.ptr);
        if result.is_null() {
            return Err(DescribeTopicsError::Kafka(
                "the answer is not a DescribeTopics result".into(),
            ));
        }
        let mut count = 0usize;
        let descriptions = rd::rd_kafka_DescribeTopics_result_topics(result, &mut count);
        if descriptions.is_null() {
            count = 0;
        }
        for i in 0..count {
            let description = *descriptions.add(i);
            if description.is_null() {
                // A topic the broker left out: reported as not in the answer below.
                continue;
            }
            let name = text(rd::rd_kafka_TopicDescription_name(description));
            let error = rd::rd_kafka_TopicDescription_error(description);
            let code = rd::rd_kafka_error_code(error);
            let lookup = match code {
                rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => {
                    // librdkafka's own text form is standard base64; Kafka's tools write URL-safe base64.
                    let id = rd::rd_kafka_TopicDescription_topic_id(description);
                    TopicLookup::Exists(TopicId::from_bits(
                        rd::rd_kafka_Uuid_most_significant_bits(id),
                        rd::rd_kafka_Uuid_least_significant_bits(id),
                    ))
                }
                rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
                | rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_ID => {
                    TopicLookup::Missing
                }
                _ => TopicLookup::Failed(text(rd::rd_kafka_error_string(error))),
            };
            answer.insert(name, lookup);
        }
    }
    for topic in topics {
        answer
            .entry(topic.to_string())
            .or_insert_with(|| TopicLookup::Failed("not in the answer".into()));
    }
    Ok(answer)
}
