// Drives runoff's live page in Debian's Chromium, headless, with playwright-core, and prints
// what it found as one JSON object on stdout; tests/it/live_page.rs starts runoff and its
// backends, runs this, and asserts on the JSON (and against runoff's own API).
//
// Usage: node live_page.mjs ADMIN_URL SCREENSHOT_DIR TOKEN WEIGHT_ROUTE
// WEIGHT_ROUTE's weights are set to 100 / 0 by keyboard. Every step is bounded; the browser is
// closed whatever happens.
import { chromium } from "playwright-core";

const [url, shots, token, weightRoute] = process.argv.slice(2);
const STEP = { timeout: 15000 };
const out = { consoleErrors: [], wrongTokenErrors: [], routes: {} };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // As root here, Chromium has no user namespace for its sandbox; and on this closed network
  // its background connections stall it unless they are off.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: "light" });
  const page = await context.newPage();
  let errors = out.wrongTokenErrors;
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url, STEP);

  // The token first: no data before it; a wrong one is refused, visibly.
  await page.waitForSelector("#token-form:not([hidden])", STEP);
  out.sectionsBeforeToken = await page.locator("section.route").count();
  await page.fill("#token", `${token}-wrong`);
  await page.press("#token", "Enter");
  await page.waitForFunction(() => document.querySelector("#token-error").textContent !== "", null, STEP);
  out.wrongTokenMessage = await page.locator("#token-error").textContent();
  out.wrongTokenVisible = await page.locator("#token-error").isVisible();
  out.sectionsAfterWrongToken = await page.locator("section.route").count();
  errors = out.consoleErrors;
  await page.fill("#token", token);
  await page.press("#token", "Enter");
  await page.waitForSelector("body[data-loaded=true]", STEP);
  await page.waitForSelector("section.route table", STEP);
  // Let one more poll land (charts from the history).
  await page.waitForTimeout(2500);

  for (const section of await page.locator("section.route").all()) {
    const name = await section.locator("h2").textContent();
    const headers = await section.locator("thead th").allTextContents();
    const requests = await section.locator("tr[data-row=requests] td").allTextContents();
    const charts = await section.locator(".charts svg").count();
    const paths = await section.locator("button.path").evaluateAll((bs) => bs.map((b) => b.dataset.path));
    const diffPaths = await section.locator("code.diff-path").allTextContents();
    const verdict = await section.locator(".verdicts h3").allTextContents();
    const wsRows = await section.locator("h3:text('WebSockets') + .scroll tbody tr").count();
    out.routes[name] = { headers, requests, charts, paths, diffPaths, verdict, wsRows };
  }

  // One click from a differing path to a ready-to-paste ignore_paths entry.
  const pathButton = page.locator("button.path").first();
  if (await pathButton.count()) {
    await pathButton.click();
    out.snippet = await page.locator(".snippet:not([hidden])").first().inputValue();
  }

  // A weight change by keyboard alone: Tab to the route's first weight, type, Tab, type, Enter.
  const first = `#route-${weightRoute} form.weights input`;
  const names = await page.locator(first).evaluateAll((is) => is.map((i) => i.name));
  let tabs = 0;
  while (tabs < 300) {
    await page.keyboard.press("Tab");
    tabs += 1;
    const here = await page.evaluate((sel) => document.activeElement === document.querySelector(sel), first);
    if (here) break;
  }
  out.tabsToWeights = tabs;
  await page.keyboard.press("Control+A");
  await page.keyboard.type("100");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Control+A");
  await page.keyboard.type("0");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => /changed/.test(document.querySelector("#status").textContent), null, STEP);
  out.weightNames = names;
  out.status = await page.locator("#status").textContent();

  await page.screenshot({ path: `${shots}/live-page.png`, fullPage: true });

  // A phone: nothing wider than the screen (tables scroll inside their own box).
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  out.phoneScrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
  await page.screenshot({ path: `${shots}/live-page-phone.png`, fullPage: true });

  // Dark: the page follows prefers-color-scheme.
  const dark = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: "dark" });
  const darkPage = await dark.newPage();
  darkPage.on("console", (m) => { if (m.type() === "error") out.consoleErrors.push(`dark: ${m.text()}`); });
  darkPage.on("pageerror", (e) => out.consoleErrors.push(`dark: ${e}`));
  await darkPage.goto(url, STEP);
  await darkPage.waitForSelector("#token-form:not([hidden])", STEP);
  await darkPage.fill("#token", token);
  await darkPage.press("#token", "Enter");
  await darkPage.waitForSelector("body[data-loaded=true]", STEP);
  await darkPage.waitForTimeout(500);
  await darkPage.screenshot({ path: `${shots}/live-page-dark.png`, fullPage: true });
  out.darkBackground = await darkPage.evaluate(() => getComputedStyle(document.body).backgroundColor);
  out.lightBackground = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
} catch (e) {
  out.failure = String(e && e.stack || e);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + "\n");
