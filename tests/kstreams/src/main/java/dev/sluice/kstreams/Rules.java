package dev.sluice.kstreams;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericEnumSymbol;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.util.Utf8;

/**
 * The benchmark chain's three rules on one Avro single-object-encoded
 * telemetry event, with the semantics of Sluice's first-party plugins
 * (plugins/filter, plugins/redact, plugins/enrich) for the configurations
 * {@link Config} can express:
 *
 * <ol>
 *   <li>filter, mode drop: drop the event when {@code severity} equals a symbol;
 *   <li>redact, mode hash: every listed string field becomes {@code "sha256:"}
 *       plus the first 16 lowercase hex characters of SHA-256(salt ++ value)
 *       (UTF-8), then {@code detect} (email, ipv4) on every value directly
 *       inside {@code attributes};
 *   <li>enrich: first the user-agent family ({@link #uaFamily}), then the
 *       lookup table (exact match, else the default).
 * </ol>
 *
 * <p>Framing: Avro single-object encoding, {@code C3 01}, the 8-byte
 * little-endian CRC-64-AVRO fingerprint, the datum. Accepted fingerprints:
 * the standard one (Java's {@link SchemaNormalization#parsingFingerprint64})
 * and every {@link Config#fingerprints} entry. Sluice's frames need the
 * latter: apache-avro 0.21 (Rust) fingerprints a canonical form in which a
 * logical-type primitive stays an object ({@code {"type":"long"}} for
 * {@code occurred_at}) where the spec wants {@code "long"}, so Sluice's
 * fingerprint differs from every other Avro implementation's. Output keeps
 * the input's header bytes, as Sluice's stage does.
 *
 * <p>Like Sluice, an event in which nothing changes keeps its input bytes.
 * A changed event is re-encoded with the same schema; the {@code attributes}
 * map is written sorted by key (UTF-8 byte order). Sluice's own encoder
 * writes map entries in hash-map order, so the two datums are byte-for-byte
 * equal up to the order of the map's entries.
 *
 * <p>Not thread-safe: one instance per stream thread.
 */
public final class Rules {
    /** Top-level fields of the telemetry schema that hold a plain string (or null). */
    static final Set<String> STRING_FIELDS = Set.of("event_id", "type", "source", "entity_id", "trace_id");

    /** What the three rules do; the defaults are sluice-bench's CHAIN_CONFIGS. */
    public static final class Config {
        /** filter: {@code {"mode":"drop","rules":[{"field":"severity","op":"equals","value":...}]}}. */
        public String dropSeverity = "DEBUG";
        /** redact: {@code fields}, dotted paths. */
        public List<String> redactFields = new ArrayList<>(List.of("attributes.email", "attributes.ip"));
        /** redact: {@code detect}: "email" and/or "ipv4". */
        public List<String> detect = new ArrayList<>();
        /** More accepted fingerprints, as the 8 frame bytes in hex (e.g. Sluice's). */
        public List<String> fingerprints = new ArrayList<>();
        /** redact: {@code salt} (mode hash). */
        public String salt = "bench";
        /** enrich: the lookup's {@code from}. */
        public String lookupFrom = "source";
        /** enrich: the lookup's {@code to}. */
        public String lookupTo = "attributes.team";
        /** enrich: the lookup's {@code table}. */
        public Map<String, String> table = new LinkedHashMap<>(Map.of("web", "growth", "checkout", "payments"));
        /** enrich: the lookup's {@code default} (null: write nothing). */
        public String lookupDefault = "unknown";
        /** enrich: {@code user_agent_from} (null: no user-agent step). */
        public String userAgentFrom = "attributes.user_agent";
        /** enrich: {@code user_agent_to}. */
        public String userAgentTo = "attributes.ua_family";
    }

    /** A dotted path: a top-level field, or {@code attributes.KEY}. */
    private record Path(String field, Utf8 key) {
        static Path parse(String text, boolean output) {
            if (text.startsWith("attributes.") && text.length() > "attributes.".length()
                    && text.indexOf('.', "attributes.".length()) < 0) {
                return new Path("attributes", new Utf8(text.substring("attributes.".length())));
            }
            if (text.indexOf('.') < 0 && (STRING_FIELDS.contains(text)
                    || (!output && (text.equals("severity") || text.equals("occurred_at"))))) {
                return new Path(text, null);
            }
            throw new IllegalArgumentException("unsupported path `" + text + "`: use attributes.KEY or one of "
                    + STRING_FIELDS + (output ? "" : ", severity, occurred_at"));
        }

        @SuppressWarnings("unchecked")
        Object get(GenericRecord record) {
            Object value = record.get(field);
            if (key == null) {
                return value;
            }
            return value instanceof Map ? ((Map<Utf8, Object>) value).get(key) : null;
        }

        @SuppressWarnings("unchecked")
        void set(GenericRecord record, String text) {
            if (key == null) {
                record.put(field, new Utf8(text));
            } else {
                ((Map<Utf8, Object>) record.get(field)).put(key, new Utf8(text));
            }
        }
    }

    /** Marker plus fingerprint. */
    static final int HEADER = 10;

    private final Schema schema;
    private final Config config;
    private final List<byte[]> fingerprints = new ArrayList<>();
    private final GenericDatumReader<GenericRecord> reader;
    private final GenericDatumWriter<GenericRecord> writer;
    private BinaryDecoder decoder;
    private BinaryEncoder encoder;
    private final MessageDigest sha256;
    private final byte[] salt;
    private final List<Path> redact = new ArrayList<>();
    private final boolean detectEmail;
    private final boolean detectIpv4;
    private final Path lookupFrom;
    private final Path lookupTo;
    private final Path userAgentFrom;
    private final Path userAgentTo;
    private final ByteArrayOutputStream out = new ByteArrayOutputStream(512);
    private GenericRecord reuse;

    public Rules(Schema schema, Config config) {
        this.schema = schema;
        this.config = config;
        this.reader = new GenericDatumReader<>(schema);
        this.writer = new GenericDatumWriter<>(schema);
        long standard = SchemaNormalization.parsingFingerprint64(schema);
        byte[] le = new byte[8];
        for (int i = 0; i < 8; i++) {
            le[i] = (byte) (standard >>> (8 * i));
        }
        fingerprints.add(le);
        for (String hex : config.fingerprints) {
            byte[] bytes = HexFormat.of().parseHex(hex);
            if (bytes.length != 8) {
                throw new IllegalArgumentException("a fingerprint is 8 bytes (16 hex digits): " + hex);
            }
            fingerprints.add(bytes);
        }
        try {
            this.sha256 = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        if (config.salt == null || config.salt.isEmpty()) {
            throw new IllegalArgumentException("redact: `salt` must not be empty (mode hash)");
        }
        this.salt = config.salt.getBytes(StandardCharsets.UTF_8);
        for (String field : config.redactFields) {
            redact.add(Path.parse(field, true));
        }
        for (String detector : config.detect) {
            if (!detector.equals("email") && !detector.equals("ipv4")) {
                throw new IllegalArgumentException("redact: unknown detector `" + detector + "`");
            }
        }
        this.detectEmail = config.detect.contains("email");
        this.detectIpv4 = config.detect.contains("ipv4");
        this.lookupFrom = config.lookupFrom == null ? null : Path.parse(config.lookupFrom, false);
        this.lookupTo = config.lookupFrom == null ? null : Path.parse(config.lookupTo, true);
        this.userAgentFrom = config.userAgentFrom == null ? null : Path.parse(config.userAgentFrom, false);
        this.userAgentTo = config.userAgentFrom == null ? null : Path.parse(config.userAgentTo, true);
    }

    /**
     * The rules on one framed value: null when the event is dropped, the
     * input array itself when nothing changed, else the re-encoded frame.
     *
     * @throws IOException when the value is not a single-object-encoded
     *     datum of the schema (Sluice sends such records to the dead letter
     *     topic)
     */
    public byte[] apply(byte[] value) throws IOException {
        if (value.length < HEADER || value[0] != (byte) 0xC3 || value[1] != (byte) 0x01) {
            throw new IOException("value is not Avro single-object encoded (missing C3 01 marker)");
        }
        if (!knownFingerprint(value)) {
            throw new IOException("unknown schema fingerprint "
                    + HexFormat.of().formatHex(Arrays.copyOfRange(value, 2, HEADER)));
        }
        decoder = DecoderFactory.get().binaryDecoder(value, HEADER, value.length - HEADER, decoder);
        GenericRecord record = reader.read(reuse, decoder);
        if (!decoder.isEnd()) {
            throw new IOException("trailing bytes after the Avro datum");
        }
        reuse = record;

        // filter
        Object severity = record.get("severity");
        if (severity != null && severity.toString().equals(config.dropSeverity)) {
            return null;
        }

        boolean changed = false;
        // redact: listed fields, then detect over attributes
        for (Path path : redact) {
            if (path.get(record) instanceof CharSequence text) {
                changed |= replace(record, path, text.toString());
            }
        }
        @SuppressWarnings("unchecked")
        Map<Utf8, Object> attributes = (Map<Utf8, Object>) record.get("attributes");
        if ((detectEmail || detectIpv4) && attributes != null) {
            for (Map.Entry<Utf8, Object> entry : attributes.entrySet()) {
                if (entry.getValue() instanceof CharSequence text) {
                    String s = text.toString();
                    if ((detectEmail && isEmail(s)) || (detectIpv4 && isIpv4(s))) {
                        String hashed = hash(s);
                        if (!hashed.equals(s)) {
                            entry.setValue(new Utf8(hashed));
                            changed = true;
                        }
                    }
                }
            }
        }

        // enrich: user agent, then the lookup
        if (userAgentFrom != null && userAgentFrom.get(record) instanceof CharSequence agent) {
            changed |= write(record, userAgentTo, uaFamily(agent.toString()));
        }
        if (lookupFrom != null) {
            String key = keyOf(lookupFrom.get(record));
            String result = key == null ? null : config.table.get(key);
            if (result == null) {
                result = config.lookupDefault;
            }
            if (result != null) {
                changed |= write(record, lookupTo, result);
            }
        }

        if (!changed) {
            return value;
        }
        if (attributes != null && !(attributes instanceof TreeMap)) {
            record.put("attributes", new TreeMap<>(attributes));
        }
        out.reset();
        out.write(value, 0, HEADER);
        encoder = EncoderFactory.get().binaryEncoder(out, encoder);
        writer.write(record, encoder);
        encoder.flush();
        return out.toByteArray();
    }

    private boolean knownFingerprint(byte[] value) {
        for (byte[] fingerprint : fingerprints) {
            if (Arrays.equals(value, 2, HEADER, fingerprint, 0, 8)) {
                return true;
            }
        }
        return false;
    }

    private boolean replace(GenericRecord record, Path path, String text) {
        String hashed = hash(text);
        if (hashed.equals(text)) {
            return false;
        }
        path.set(record, hashed);
        return true;
    }

    private static boolean write(GenericRecord record, Path path, String text) {
        Object current = path.get(record);
        if (current instanceof CharSequence c && c.toString().equals(text)) {
            return false;
        }
        path.set(record, text);
        return true;
    }

    /** enrich's `key_of`: strings as they are, numbers by their decimal text. */
    private static String keyOf(Object value) {
        if (value instanceof CharSequence || value instanceof GenericEnumSymbol<?>) {
            return value.toString();
        }
        if (value instanceof Long || value instanceof Integer) {
            return value.toString();
        }
        return null;
    }

    /** redact's hash: "sha256:" + hex(SHA-256(salt ++ value))[..16]. */
    public String hash(String value) {
        sha256.reset();
        sha256.update(salt);
        byte[] digest = sha256.digest(value.getBytes(StandardCharsets.UTF_8));
        char[] out = new char[7 + 16];
        "sha256:".getChars(0, 7, out, 0);
        for (int i = 0; i < 8; i++) {
            out[7 + 2 * i] = Character.forDigit((digest[i] >> 4) & 0xf, 16);
            out[8 + 2 * i] = Character.forDigit(digest[i] & 0xf, 16);
        }
        return new String(out);
    }

    /** enrich's `ua_family`, rule for rule (the first that matches wins). */
    public static String uaFamily(String agent) {
        String lower = asciiLowercase(agent);
        if (lower.contains("bot") || lower.contains("crawler") || lower.contains("spider")) {
            return "bot";
        } else if (agent.contains("Edg/")) {
            return "Edge";
        } else if (agent.contains("Firefox/")) {
            return "Firefox";
        } else if (agent.contains("Chrome/")) {
            return "Chrome";
        } else if (agent.contains("Safari/")) {
            return "Safari";
        } else if (agent.contains("curl/")) {
            return "curl";
        }
        return "other";
    }

    /** Rust's `to_ascii_lowercase`: only A-Z change (not String.toLowerCase). */
    static String asciiLowercase(String text) {
        char[] chars = text.toCharArray();
        for (int i = 0; i < chars.length; i++) {
            if (chars[i] >= 'A' && chars[i] <= 'Z') {
                chars[i] = (char) (chars[i] + ('a' - 'A'));
            }
        }
        return new String(chars);
    }

    private static boolean asciiAlnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    }

    /** redact's `is_email`. */
    public static boolean isEmail(String value) {
        int at = value.indexOf('@');
        if (at < 0) {
            return false;
        }
        String local = value.substring(0, at);
        String domain = value.substring(at + 1);
        if (local.isEmpty()) {
            return false;
        }
        for (char c : local.toCharArray()) {
            if (!asciiAlnum(c) && "._%+-!#$&'*/=?^`{|}~".indexOf(c) < 0) {
                return false;
            }
        }
        String[] labels = domain.split("\\.", -1);
        if (labels.length < 2) {
            return false;
        }
        for (String label : labels) {
            if (label.isEmpty()) {
                return false;
            }
            for (char c : label.toCharArray()) {
                if (!asciiAlnum(c) && c != '-') {
                    return false;
                }
            }
        }
        return true;
    }

    /** redact's `is_ipv4`: four groups of 1 to 3 ASCII digits, each at most 255. */
    public static boolean isIpv4(String value) {
        String[] groups = value.split("\\.", -1);
        if (groups.length != 4) {
            return false;
        }
        for (String group : groups) {
            if (group.isEmpty() || group.length() > 3) {
                return false;
            }
            for (char c : group.toCharArray()) {
                if (c < '0' || c > '9') {
                    return false;
                }
            }
            if (Integer.parseInt(group) > 255) {
                return false;
            }
        }
        return true;
    }

    /** The schema events are decoded and encoded with. */
    public Schema schema() {
        return schema;
    }
}
