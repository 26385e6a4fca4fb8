// Playwright for the web console's browser tests: Debian's Chromium,
// headless, driven by the @playwright/test of package.json (installed by
// scripts/install-browser.sh; no Playwright browser download). Run through
// tests/src/browser.rs (`run_specs`), or by hand from tests/browser:
//   SLUICE_URL=http://127.0.0.1:PORT node_modules/.bin/playwright test -c playwright.config.mjs
//
// SLUICE_CHROMIUM: the Chromium binary (default: `chromium` on PATH, that is
// /usr/bin/chromium). SLUICE_URL: the baseURL page.goto('/...') is relative
// to (the host under test). SLUICE_BROWSER_OUT: where results and
// screenshots go (paths.mjs).
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { defineConfig } from '@playwright/test';
import { here, resultsDir } from './paths.mjs';

function chromium() {
  if (process.env.SLUICE_CHROMIUM) return process.env.SLUICE_CHROMIUM;
  try {
    return execFileSync('which', ['chromium'], { encoding: 'utf8' }).trim() || '/usr/bin/chromium';
  } catch {
    return '/usr/bin/chromium';
  }
}

export default defineConfig({
  testDir: path.join(here, 'specs'),
  outputDir: resultsDir,
  reporter: 'list',
  // One browser at a time: 2 cores, shared with the Kafka brokers and hosts
  // of the other tests.
  workers: 1,
  fullyParallel: false,
  retries: 0,
  forbidOnly: !!process.env.CI,
  timeout: 120_000,
  use: {
    baseURL: process.env.SLUICE_URL,
    headless: true,
    screenshot: 'only-on-failure',
    trace: 'retain-on-failure',
  },
  projects: [
    {
      name: 'chromium',
      use: {
        browserName: 'chromium',
        launchOptions: {
          executablePath: chromium(),
          // We run as root, where Chromium's sandbox cannot start. Playwright
          // already passes --disable-background-networking and friends, so
          // the closed network sees no connection attempts.
          args: ['--no-sandbox'],
        },
      },
    },
  ],
});
