// Solves the signup's proof of work off the page's thread, telling the page
// how many attempts it made and how fast, so it can show progress and an
// estimate.
import { type PowProgress, type PowRequest, search } from "./pow";

const BATCH = 20_000;

self.onmessage = (event: MessageEvent<PowRequest>) => {
  const { challenge, address, difficulty } = event.data;
  const started = performance.now();
  let tried = 0;
  for (;;) {
    const found = search(challenge, address, difficulty, tried, BATCH);
    if (found !== null) {
      self.postMessage({ kind: "found", counter: found, tried: found + 1 } satisfies PowProgress);
      return;
    }
    tried += BATCH;
    const seconds = (performance.now() - started) / 1000;
    self.postMessage({ kind: "progress", tried, perSecond: seconds > 0 ? tried / seconds : 0 } satisfies PowProgress);
  }
};
