package dev.sluice.kstreams;

import java.io.IOException;
import java.io.InputStream;

/**
 * Ties the JVM's life to its parent's: the parent (tests/src/kstreams.rs)
 * gives the JVM a pipe as stdin and never writes to it. When the parent
 * exits, however it exits (return, panic, SIGKILL), the pipe closes, the
 * read below sees end of file, and the JVM halts. The JVM never outlives
 * the process that started it.
 */
final class Guardian {
    private Guardian() {}

    /** Starts the watcher; {@code onEof} runs first (bounded by 5 s), then the JVM halts. */
    static void watchStdin(Runnable onEof) {
        Thread watcher = new Thread(() -> {
            InputStream in = System.in;
            byte[] buffer = new byte[256];
            try {
                while (in.read(buffer) >= 0) {
                    // Input is ignored; only end of file matters.
                }
            } catch (IOException e) {
                // A broken pipe is the same signal as end of file.
            }
            Thread killer = new Thread(() -> {
                try {
                    Thread.sleep(5_000);
                } catch (InterruptedException e) {
                    // halt anyway
                }
                Runtime.getRuntime().halt(0);
            }, "sluice-guardian-halt");
            killer.setDaemon(true);
            killer.start();
            try {
                onEof.run();
            } finally {
                Runtime.getRuntime().halt(0);
            }
        }, "sluice-guardian");
        watcher.setDaemon(true);
        watcher.start();
    }
}
