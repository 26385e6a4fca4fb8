package dev.sluice.kstreams;

/**
 * Kafka's own {@code org.apache.kafka.tools.ProducerPerformance} (kafka-tools),
 * unchanged, under the {@link Guardian} so it dies with its parent. All
 * arguments go to ProducerPerformance.
 */
public final class Perf {
    private Perf() {}

    public static void main(String[] args) throws Exception {
        Guardian.watchStdin(() -> {});
        org.apache.kafka.tools.ProducerPerformance.main(args);
    }
}
