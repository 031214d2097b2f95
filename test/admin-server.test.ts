import { afterEach, describe, expect, it } from "vitest";
import { pino } from "pino";
import { createAdminServer, type AdminServer } from "../src/server/ops/admin-server.js";
import { createReadiness, ServingStatus } from "../src/server/ops/health.js";
import { createRelayMetrics } from "../src/server/ops/metrics.js";

let admin: AdminServer | undefined;
afterEach(async () => {
  await admin?.close();
  admin = undefined;
});

describe("admin server", () => {
  it("should serve metrics, liveness and readiness on loopback", async () => {
    const readiness = createReadiness();
    admin = await createAdminServer({ registry: createRelayMetrics().registry, readiness, logger: pino({ level: "silent" }) });
    expect(admin.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const metrics = await fetch(`${admin.url}/metrics`);
    expect(metrics.headers.get("content-type")).toContain("text/plain");
    const text = await metrics.text();
    expect(text).toContain("relay_rpc_requests_total");
    expect(text).toContain("process_cpu_user_seconds_total");
    expect((await fetch(`${admin.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${admin.url}/readyz`)).status).toBe(503);
    readiness.set(ServingStatus.SERVING);
    expect((await fetch(`${admin.url}/readyz`)).status).toBe(200);
    expect((await fetch(`${admin.url}/nope`)).status).toBe(404);
    expect((await fetch(`${admin.url}/metrics`, { method: "POST" })).status).toBe(405);
  });

});
