// Svix's official JavaScript client (npm `svix`, pinned in package.json),
// unchanged, with serverUrl pointed at the real binary: two applications and
// their endpoints (local receivers that verify every delivery with Svix's
// Webhook class), 60 messages, listings paged to their end, a resend, a
// secret rotation, and a tenant token that gets 404 for another tenant.
//
// Usage: node client.mjs PATH/TO/hookgate

import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import assert from "node:assert/strict";
import { Svix, Webhook, ApiException } from "svix";

const TOKEN = "svix-node-admin-token";

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(what, cond, timeoutMs = 60000) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** A receiver that verifies each delivery with Svix's Webhook class. */
async function receiver() {
  const rx = { secrets: [], got: [], bad: 0 };
  rx.server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const ok = rx.secrets.some((s) => {
        try {
          new Webhook(s).verify(body, req.headers);
          return true;
        } catch {
          return false;
        }
      });
      if (ok) rx.got.push({ id: req.headers["svix-id"], payload: JSON.parse(body) });
      else rx.bad += 1;
      res.writeHead(ok ? 200 : 400).end();
    });
  });
  await new Promise((r) => rx.server.listen(0, "127.0.0.1", r));
  rx.url = `http://127.0.0.1:${rx.server.address().port}/hook`;
  return rx;
}

async function pageAll(fetch) {
  const items = [];
  let iterator;
  let pages = 0;
  for (;;) {
    const page = await fetch(iterator);
    items.push(...page.data);
    pages += 1;
    if (page.done) return { items, pages };
    iterator = page.iterator;
  }
}

async function statusOf(call) {
  try {
    await call();
    return 200;
  } catch (e) {
    if (e instanceof ApiException) return e.code;
    throw e;
  }
}

async function run(server) {
  const svix = new Svix(TOKEN, { serverUrl: server });
  await svix.eventType.create({ name: "invoice.paid", description: "An invoice was paid" });
  const apps = [];
  const rxs = [];
  for (const name of ["north", "south"]) {
    const app = await svix.application.create({ name, uid: name });
    const rx = await receiver();
    rx.app = app.id;
    const ep = await svix.endpoint.create(app.id, { url: rx.url, eventTypes: ["invoice.paid"] });
    rx.ep = ep.id;
    rx.secrets.push((await svix.endpoint.getSecret(app.id, ep.id)).key);
    apps.push(app);
    rxs.push(rx);
  }
  const sent = new Map(apps.map((a) => [a.id, []]));
  for (let n = 0; n < 60; n++) {
    const app = apps[n % 2];
    const msg = await svix.message.create(app.id, {
      eventType: "invoice.paid",
      payload: { n, app: app.id },
    });
    sent.get(app.id).push(msg.id);
  }
  for (const rx of rxs) {
    await waitFor(`deliveries to ${rx.app}`, () => rx.got.length >= 30);
    assert.equal(rx.bad, 0);
    assert.deepEqual(new Set(rx.got.map((g) => g.id)), new Set(sent.get(rx.app)));
    assert.ok(rx.got.every((g) => g.payload.app === rx.app));
  }
  for (const app of apps) {
    const { items, pages } = await pageAll((iterator) =>
      svix.message.list(app.id, { limit: 7, iterator }),
    );
    assert.deepEqual(new Set(items.map((m) => m.id)), new Set(sent.get(app.id)));
    assert.ok(pages > 1);
  }
  const [a, rxA] = [apps[0], rxs[0]];
  const { items: attempts } = await pageAll((iterator) =>
    svix.messageAttempt.listByEndpoint(a.id, rxA.ep, { limit: 10, iterator }),
  );
  assert.equal(attempts.length, 30);
  const first = sent.get(a.id)[0];
  await svix.messageAttempt.resend(a.id, first, rxA.ep);
  await waitFor("the resend", () => rxA.got.filter((g) => g.id === first).length === 2);

  await svix.endpoint.rotateSecret(a.id, rxA.ep, {});
  const rotated = (await svix.endpoint.getSecret(a.id, rxA.ep)).key;
  assert.ok(!rxA.secrets.includes(rotated));
  rxA.secrets = [rotated];
  const after = await svix.message.create(a.id, { eventType: "invoice.paid", payload: { app: a.id } });
  await waitFor("a delivery signed with the new secret", () => rxA.got.some((g) => g.id === after.id));
  assert.equal(rxA.bad, 0);

  const access = await svix.authentication.appPortalAccess(a.id, {});
  const tenant = new Svix(access.token, { serverUrl: server });
  assert.equal((await tenant.message.get(a.id, first)).id, first);
  assert.equal(await statusOf(() => tenant.message.get(apps[1].id, sent.get(apps[1].id)[0])), 404);
  assert.equal(await statusOf(() => tenant.message.get(a.id, sent.get(apps[1].id)[0])), 404);
  for (const rx of rxs) rx.server.close();
  console.log("svix node client: ok");
}

async function main() {
  const binary = process.argv[2];
  const dir = mkdtempSync(path.join(os.tmpdir(), "hookgate-svix-node-"));
  const [ingest, admin] = [await freePort(), await freePort()];
  const cfg = path.join(dir, "hookgate.toml");
  writeFileSync(
    cfg,
    `[server]\nlisten = "127.0.0.1:${ingest}"\nadmin_listen = "127.0.0.1:${admin}"\n` +
      `admin_tokens = ["${TOKEN}"]\nallow_private_destinations = true\n` +
      `[storage]\npath = "${dir}/hg.db"\n`,
  );
  const gw = spawn(binary, ["serve", "--config", cfg], { stdio: ["ignore", "ignore", "inherit"] });
  const server = `http://127.0.0.1:${admin}`;
  try {
    await waitFor("the gateway", async () => {
      try {
        return (await fetch(`${server}/healthz`)).ok;
      } catch {
        return false;
      }
    }, 20000);
    await run(server);
  } finally {
    gw.kill("SIGTERM");
    await new Promise((r) => gw.on("exit", r));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
