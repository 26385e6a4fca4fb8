// Where the browser tests write, shared by playwright.config.mjs and the
// specs (tests/src/browser.rs computes the same paths on the Rust side):
// $SLUICE_BROWSER_OUT, default tests/browser/output/ (ignored by git).
//  - results/: Playwright's outputDir (traces, failure screenshots); the
//    runner empties it at each start, so tests/src/browser.rs gives each
//    spec run its own subdirectory with --output;
//  - screenshots/: screenshots the specs take on purpose, kept across runs.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const here = path.dirname(fileURLToPath(import.meta.url));
export const outputDir = process.env.SLUICE_BROWSER_OUT
  ? path.resolve(process.env.SLUICE_BROWSER_OUT)
  : path.join(here, 'output');
export const resultsDir = path.join(outputDir, 'results');
export const screenshotsDir = path.join(outputDir, 'screenshots');
