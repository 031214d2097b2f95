import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestRelay, type TestRelay } from "../support/relay.js";
import { startCli, type CliProcess } from "../share/cli-process.js";

/** Debian's Chromium, never a downloaded browser build (CI installs it with apt-get). */
const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const chromiumArgs = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];
/**
 * Where the page's screenshot goes when HOUSE_SCREENSHOT names a file (`HOUSE_SCREENSHOT=docs/house.png`
 * refreshes the picture in the docs); otherwise into the test's temp folder, so that a test run
 * leaves the checkout as it was.
 */
const screenshotTarget = process.env.HOUSE_SCREENSHOT === undefined ? undefined : resolve(process.env.HOUSE_SCREENSHOT);

// The house in a real browser: alice shares, carol shares only with alice (so bob is refused),
// bob runs `relay-peer house`, and headless Chromium drives bob's page. Everything on loopback.
describe("the house in a browser", () => {
  let base: string;
  let relay: TestRelay;
  let browser: Browser;
  let page: Page;
  let alice: CliProcess;
  let houseUrl: string;
  const processes: CliProcess[] = [];
  let photo: Buffer;

  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), "house-browser-"));
    browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs, headless: true });
    page = await (await browser.newContext({ acceptDownloads: true, viewport: { width: 1100, height: 640 } })).newPage();
    // A real 16×16 PNG to share, drawn by the browser itself.
    await page.setContent('<div style="width:16px;height:16px;background:#0969da"></div>');
    photo = await page.screenshot({ clip: { x: 8, y: 8, width: 16, height: 16 } });
    relay = await startTestRelay();
    const caFile = join(base, "relay-ca.pem");
    await writeFile(caFile, relay.caPem);
    const as = (name: string) => ["--relay", relay.url, "--relay-ca", caFile, "--identity", join(base, "identities", name), "--email", `${name}@example.com`];
    const files = join(base, "alice-files");
    await mkdir(join(files, "trips"), { recursive: true });
    await writeFile(join(files, "notes.txt"), "Notes from alice: the relay found you.\n");
    await writeFile(join(files, "photo.png"), photo);
    await writeFile(join(files, "trips", "plan.md"), "# Trip plan\n");

    const share = (name: string, extra: string[]) => {
      const started = startCli(["share", files, "--port", "0", "--bind", "127.0.0.1", "--address", "127.0.0.1", "--json", ...extra, ...as(name)]);
      processes.push(started);
      return started;
    };
    alice = share("alice", []);
    const carol = share("carol", ["--allow", "alice@example.com"]);
    await Promise.all([alice.waitForLine((line) => line.status === "online"), carol.waitForLine((line) => line.status === "online")]);
    // Refreshes (List and dials) are a minute apart: what changes a badge sooner is the relay's Watch.
    const house = startCli(["house", "--refresh-ms", "60000", "--json", ...as("bob")]);
    processes.push(house);
    houseUrl = (await house.waitForLine((line) => line.status === "house")).url as string;
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await Promise.all(processes.map((started) => started.stop()));
    await relay?.stop();
    await rm(base, { recursive: true, force: true });
  });

  const badge = (email: string) => page.locator(`li[data-email="${email}"] .badge`);

  it("should show alice online and carol, who does not let bob in, as error", async () => {
    await page.goto(houseUrl);
    await expect.poll(() => badge("alice@example.com").textContent(), { timeout: 20_000 }).toBe("online");
    await expect.poll(() => badge("carol@example.com").textContent(), { timeout: 20_000 }).toBe("error");
    expect(await page.locator('li[data-email="alice@example.com"] .detail').textContent()).toMatch(/last seen .* · answered at 127\.0\.0\.1/);
    expect(await page.locator('li[data-email="carol@example.com"] .detail').textContent()).toContain("bob@example.com is not allowed to read this share");
  });

  it("should open alice's files from the keyboard, preview text and an image, and download a file", async () => {
    await page.locator('li[data-email="alice@example.com"] button').focus();
    await page.keyboard.press("Enter");
    await page.locator('#files tr[data-name="notes.txt"]').waitFor();
    expect(await page.locator("#files tbody tr").evaluateAll((rows) => rows.map((row) => row.getAttribute("data-name")))).toEqual(["trips", "notes.txt", "photo.png"]);

    await page.locator('tr[data-name="notes.txt"] button.entry').click();
    await expect.poll(() => page.locator("#preview pre").textContent()).toBe("Notes from alice: the relay found you.\n");
    await page.keyboard.press("Escape");
    expect(await page.locator("#preview-section").isHidden()).toBe(true);

    await page.locator('tr[data-name="photo.png"] button.entry').click();
    const image = page.locator("#preview img");
    // (The page's DOM types are not in this project's lib: the image is read as a plain object.)
    await expect.poll(() => image.evaluate((node) => (node as unknown as { complete: boolean; naturalWidth: number }).complete && (node as unknown as { naturalWidth: number }).naturalWidth)).toBe(16);

    const [download] = await Promise.all([page.waitForEvent("download"), page.locator('tr[data-name="photo.png"] a.download').click()]);
    expect(download.suggestedFilename()).toBe("photo.png");
    expect((await readFile((await download.path())!)).equals(photo)).toBe(true);

    await page.locator('tr[data-name="trips"] button.entry').click();
    await page.locator('#files tr[data-name="plan.md"]').waitFor();
    await page.locator('tr[data-name="plan.md"] button.entry').click();
    await expect.poll(() => page.locator("#preview pre").textContent()).toBe("# Trip plan\n");
    await page.screenshot({ path: screenshotTarget ?? join(base, "house.png"), fullPage: true });
  });

  it("should stay readable on a phone-width window: nothing wider than the screen", async () => {
    await page.setViewportSize({ width: 375, height: 740 });
    expect(await page.evaluate<number>("document.documentElement.scrollWidth")).toBeLessThanOrEqual(375);
    await page.setViewportSize({ width: 1100, height: 640 });
  });

  it("should turn alice's badge offline when she stops, at once through Watch, without a reload", async () => {
    await page.evaluate("window.notReloaded = true");
    expect(await alice.stop()).toBe(0);
    await expect.poll(() => badge("alice@example.com").textContent(), { timeout: 20_000 }).toBe("offline");
    expect(await page.locator('li[data-email="alice@example.com"] .detail').textContent()).toContain("withdrawn");
    expect(await page.evaluate<boolean>("window.notReloaded === true")).toBe(true);
  });
});
