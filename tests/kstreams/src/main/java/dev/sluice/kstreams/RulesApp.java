package dev.sluice.kstreams;

import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.avro.Schema;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;

/**
 * A Kafka Streams application running Sluice's benchmark chain (see
 * {@link Rules}) from an input topic to an output topic: what a JVM team
 * would write instead of a Sluice stage. Stateless: one source, one
 * flatMapValues, one sink; keys (bytes) pass through unchanged, so there is
 * no repartition topic. Records that do not decode are counted, reported on
 * stderr and skipped (Sluice would send them to its dead-letter topic).
 *
 * <p>Lines on stdout, for the harness:
 * {@code sluice-kstreams: state RUNNING}, {@code sluice-kstreams: first-record epoch_ms=T}
 * (when the first input record reaches the rules) and
 * {@code sluice-kstreams: consumed N epoch_ms=T} every {@code --progress-every}
 * records (0: never).
 *
 * <p>{@code --pipe} runs the rules without Kafka: one hex-encoded framed
 * value per stdin line in, one line out per input ({@code DROP}, {@code ERROR
 * message}, or the hex of the output value).
 */
public final class RulesApp {
    private RulesApp() {}

    private static final String USAGE = """
            usage: RulesApp --schema FILE.avsc --salt SALT [--fingerprint HEX]...
                            (--pipe | --bootstrap HOST:PORT --input TOPIC --output TOPIC --application-id ID)
                            [--exactly-once] [--commit-interval-ms 100] [--threads 1] [--progress-every 10000]
                            [--drop-severity DEBUG] [--redact attributes.email,attributes.ip] [--detect email,ipv4]
                            [--lookup-from source] [--lookup-to attributes.team]
                            [--table web=growth,checkout=payments] [--lookup-default unknown]
                            [--ua-from attributes.user_agent] [--ua-to attributes.ua_family] [--no-ua]
                            [--config streams.key=value]...
            Defaults: sluice-bench's CHAIN_CONFIGS.""";

    public static void main(String[] args) throws Exception {
        Rules.Config rules = new Rules.Config();
        String schemaPath = null;
        String bootstrap = null;
        String input = null;
        String output = null;
        String applicationId = null;
        boolean exactlyOnce = false;
        boolean pipe = false;
        long commitIntervalMs = 100;
        int threads = 1;
        long progress = 10_000;
        List<String[]> extra = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            switch (arg) {
                case "--exactly-once" -> exactlyOnce = true;
                case "--pipe" -> pipe = true;
                case "--no-ua" -> rules.userAgentFrom = null;
                case "--help", "-h" -> {
                    System.out.println(USAGE);
                    return;
                }
                default -> {
                    if (i + 1 >= args.length) {
                        fail("missing value for " + arg);
                    }
                    String value = args[++i];
                    switch (arg) {
                        case "--schema" -> schemaPath = value;
                        case "--salt" -> rules.salt = value;
                        case "--fingerprint" -> rules.fingerprints.add(value);
                        case "--bootstrap" -> bootstrap = value;
                        case "--input" -> input = value;
                        case "--output" -> output = value;
                        case "--application-id" -> applicationId = value;
                        case "--commit-interval-ms" -> commitIntervalMs = Long.parseLong(value);
                        case "--threads" -> threads = Integer.parseInt(value);
                        case "--progress-every" -> progress = Long.parseLong(value);
                        case "--drop-severity" -> rules.dropSeverity = value;
                        case "--redact" -> rules.redactFields = list(value);
                        case "--detect" -> rules.detect = list(value);
                        case "--lookup-from" -> rules.lookupFrom = value;
                        case "--lookup-to" -> rules.lookupTo = value;
                        case "--lookup-default" -> rules.lookupDefault = value;
                        case "--table" -> {
                            rules.table = new LinkedHashMap<>();
                            for (String pair : list(value)) {
                                int eq = pair.indexOf('=');
                                if (eq < 0) {
                                    fail("--table wants KEY=VALUE pairs, got " + pair);
                                }
                                rules.table.put(pair.substring(0, eq), pair.substring(eq + 1));
                            }
                        }
                        case "--ua-from" -> rules.userAgentFrom = value;
                        case "--ua-to" -> rules.userAgentTo = value;
                        case "--config" -> {
                            int eq = value.indexOf('=');
                            if (eq < 0) {
                                fail("--config wants KEY=VALUE, got " + value);
                            }
                            extra.add(new String[] {value.substring(0, eq), value.substring(eq + 1)});
                        }
                        default -> fail("unknown argument " + arg);
                    }
                }
            }
        }
        if (schemaPath == null) {
            fail("--schema is required");
        }
        Schema schema = new Schema.Parser().parse(new File(schemaPath));
        new Rules(schema, rules); // validates the configuration before anything starts
        if (pipe) {
            pipe(new Rules(schema, rules));
            return;
        }
        if (bootstrap == null || input == null || output == null || applicationId == null) {
            fail("--bootstrap, --input, --output and --application-id are required");
        }

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, applicationId);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, commitIntervalMs);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG,
                exactlyOnce ? StreamsConfig.EXACTLY_ONCE_V2 : StreamsConfig.AT_LEAST_ONCE);
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        props.put(StreamsConfig.STATE_DIR_CONFIG,
                new File(System.getProperty("java.io.tmpdir"), "sluice-kstreams-" + applicationId).getPath());
        for (String[] kv : extra) {
            props.put(kv[0], kv[1]);
        }

        AtomicBoolean first = new AtomicBoolean();
        AtomicLong consumed = new AtomicLong();
        final long progressEvery = progress;
        AtomicLong undecodable = new AtomicLong();
        ThreadLocal<Rules> perThread = ThreadLocal.withInitial(() -> new Rules(schema, rules));
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
                .flatMapValues(value -> {
                    if (!first.get() && first.compareAndSet(false, true)) {
                        say("first-record epoch_ms=" + System.currentTimeMillis());
                    }
                    long n = consumed.incrementAndGet();
                    if (progressEvery > 0 && n % progressEvery == 0) {
                        say("consumed " + n + " epoch_ms=" + System.currentTimeMillis());
                    }
                    if (value == null) {
                        return List.of();
                    }
                    try {
                        byte[] out = perThread.get().apply(value);
                        return out == null ? List.<byte[]>of() : List.of(out);
                    } catch (IOException | RuntimeException e) {
                        long bad = undecodable.incrementAndGet();
                        if (bad == 1 || bad % 10_000 == 0) {
                            System.err.println("sluice-kstreams: skipped " + bad + " undecodable record(s): " + e);
                        }
                        return List.<byte[]>of();
                    }
                })
                .to(output, Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));
        Topology topology = builder.build();

        KafkaStreams streams = new KafkaStreams(topology, props);
        CountDownLatch done = new CountDownLatch(1);
        streams.setStateListener((now, before) -> {
            say("state " + now);
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
                done.countDown();
            }
        });
        streams.setUncaughtExceptionHandler(e -> {
            System.err.println("sluice-kstreams: stream thread failed: " + e);
            e.printStackTrace();
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        Guardian.watchStdin(() -> streams.close(Duration.ofSeconds(3)));
        say("topology " + topology.describe().toString().replace('\n', ' '));
        streams.start();
        done.await();
        streams.close(Duration.ofSeconds(3));
        System.exit(streams.state() == KafkaStreams.State.ERROR ? 1 : 0);
    }

    private static void pipe(Rules rules) throws IOException {
        HexFormat hex = HexFormat.of();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        BufferedWriter out = new BufferedWriter(new OutputStreamWriter(System.out, StandardCharsets.UTF_8));
        for (String line = in.readLine(); line != null; line = in.readLine()) {
            if (line.isBlank()) {
                continue;
            }
            try {
                byte[] result = rules.apply(hex.parseHex(line.trim()));
                out.write(result == null ? "DROP" : hex.formatHex(result));
            } catch (IOException | RuntimeException e) {
                out.write("ERROR " + e.toString().replace('\n', ' '));
            }
            out.newLine();
        }
        out.flush();
    }

    private static List<String> list(String value) {
        return value.isEmpty() ? new ArrayList<>() : new ArrayList<>(Arrays.asList(value.split(",")));
    }

    private static void say(String line) {
        System.out.println("sluice-kstreams: " + line);
        System.out.flush();
    }

    private static void fail(String message) {
        System.err.println("RulesApp: " + message + "\n" + USAGE);
        System.exit(2);
    }
}
