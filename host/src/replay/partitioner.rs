//! Which partition a key lives in: the producer's own partitioner.
//!
//! Sluice's producers (and most librdkafka producers) leave `partitioner` at
//! librdkafka's default, `consistent_random`: CRC32 of the key modulo the
//! partition count for a non-empty key. `[kafka.client] partitioner` may
//! change it. Replay calls librdkafka's own partitioner functions so the
//! answer is the producer's by construction, not a re-implementation.

use rdkafka::bindings as rd;

/// The partition librdkafka's `partitioner` puts `key` in, among
/// `partitions`; `None` when the partitioner does not depend on the key
/// (`random`, or an empty key with a `*_random` partitioner), so every
/// partition must be read.
pub fn partition_for_key(
    partitioner: &str,
    key: &[u8],
    partitions: i32,
) -> Result<Option<i32>, String> {
    type Partitioner = unsafe extern "C" fn(
        *const rd::rd_kafka_topic_t,
        *const std::ffi::c_void,
        usize,
        i32,
        *mut std::ffi::c_void,
        *mut std::ffi::c_void,
    ) -> i32;
    if partitions <= 0 {
        return Err("the topic has no partitions".into());
    }
    let function: Partitioner = match partitioner {
        "random" => return Ok(None),
        "consistent_random" | "murmur2_random" | "fnv1a_random" if key.is_empty() => {
            return Ok(None);
        }
        "consistent" | "consistent_random" => rd::rd_kafka_msg_partitioner_consistent,
        "murmur2" | "murmur2_random" => rd::rd_kafka_msg_partitioner_murmur2,
        "fnv1a" | "fnv1a_random" => rd::rd_kafka_msg_partitioner_fnv1a,
        other => {
            return Err(format!(
                "[kafka.client] partitioner `{other}` is not one replay can compute; \
                 use --partition instead of --key"
            ));
        }
    };
    // SAFETY: these three librdkafka partitioners only hash `key[..keylen]`
    // and take it modulo `partition_cnt` (rdkafka_msg.c); they never read the
    // topic handle or the opaques, so null pointers are fine. `key` is a
    // valid slice for the duration of the call.
    let partition = unsafe {
        function(
            std::ptr::null(),
            key.as_ptr().cast(),
            key.len(),
            partitions,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    Ok(Some(partition))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC-32 (IEEE, reflected), written out independently of librdkafka.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn consistent_is_crc32_mod_partitions() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        for i in 0..200 {
            let key = format!("user-{i}");
            let want = (crc32(key.as_bytes()) % 3) as i32;
            assert_eq!(
                partition_for_key("consistent_random", key.as_bytes(), 3),
                Ok(Some(want)),
                "{key}"
            );
        }
    }

    #[test]
    fn murmur2_matches_the_java_client() {
        // Kafka's Java DefaultPartitioner test vectors (Utils.murmur2).
        assert_eq!(
            partition_for_key("murmur2_random", b"kafka", i32::MAX),
            Ok(Some((0xd067cf64u32 & 0x7fff_ffff) as i32 % i32::MAX))
        );
    }

    #[test]
    fn keyless_or_random_reads_everything() {
        assert_eq!(partition_for_key("random", b"k", 3), Ok(None));
        assert_eq!(partition_for_key("consistent_random", b"", 3), Ok(None));
        assert!(partition_for_key("sticky", b"k", 3).is_err());
    }
}
