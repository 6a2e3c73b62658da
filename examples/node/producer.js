// A connector's producer in Node.js with celery-node: register a portal (from the app's install
// event), then confirm the delivery of messages, through the worker's broker (Redis or RabbitMQ).
//
//   node producer.js BROKER_URL < payloads.json
//
// payloads.json: {"register": {<portal.register keyword arguments>},
//                 "confirm": [{<delivery.confirm keyword arguments>}, ...]}
// Prints one task id per line. The wire format: docs/producers-other-languages.md.
"use strict";

const crypto = require("crypto");
const os = require("os");
const celery = require("celery-node");

// Keys whose values never show in task events (Flower): the worker masks the same ones.
const SECRET_KEYS = new Set(["access_token", "refresh_token", "application_token",
  "client_secret", "auth", "auth_id", "refresh_id"]);

function masked(value) {
  if (Array.isArray(value)) return value.map(masked);
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(Object.entries(value).map(
    ([k, v]) => [k, SECRET_KEYS.has(k.toLowerCase()) ? "***" : masked(v)]));
}

// Send `name` with keyword arguments `kwargs` (the worker's tasks take no positional ones) and
// resolve once the broker client has written it. celery-node's `sendTask` does not wait for the
// publish, and its v2 headers carry only lang/task/id: this fills in the rest of Celery's
// protocol v2 headers (kwargsrepr with secrets masked) and waits.
async function sendTask(client, name, kwargs) {
  const id = crypto.randomUUID();
  const message = client.createTaskMessage(id, name, [], kwargs);
  Object.assign(message.headers, {
    lang: "js", task: name, id, shadow: null, eta: null, expires: null, group: null,
    group_index: null, retries: 0, timelimit: [null, null], root_id: id, parent_id: null,
    argsrepr: "()", kwargsrepr: JSON.stringify(masked(kwargs)),
    origin: `node@${os.hostname()}`, ignore_result: true,
  });
  await client.isReady();
  await client.broker.publish(
    message.body, "", client.conf.CELERY_QUEUE, message.headers, message.properties);
  return id;
}

async function main() {
  const url = process.argv[2] || process.env.CELERY_BROKER_URL || "redis://127.0.0.1:6379/0";
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const payloads = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  // the broker as backend too: celery-node wants one; nothing reads results
  const client = celery.createClient(url, url);
  try {
    console.log(await sendTask(client, "portal.register", payloads.register));
    for (const confirmation of payloads.confirm) {
      console.log(await sendTask(client, "delivery.confirm", confirmation));
    }
  } finally {
    await client.disconnect();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
