// A server written with the official TypeScript SDK v2 (@modelcontextprotocol/server), for Bastion's gateway
// tests: `node ts_server.mjs stdio`, or `node ts_server.mjs http PORT` (Streamable HTTP at /mcp, both eras).
import http from "node:http";
import { McpServer, createMcpHandler } from "@modelcontextprotocol/server";
import { serveStdio } from "@modelcontextprotocol/server/stdio";
import * as z from "zod/v4";

function build() {
  const server = new McpServer({ name: "ts-notes", version: "1.0.0" });
  server.registerTool("echo", { description: "Say it back.", inputSchema: z.object({ text: z.string() }) },
    async ({ text }) => ({ content: [{ type: "text", text }] }));
  server.registerTool("pid", { description: "This process's id." },
    async () => ({ content: [{ type: "text", text: String(process.pid) }] }));
  return server;
}

const [mode, port] = process.argv.slice(2);
if (mode === "stdio") {
  serveStdio(build);
} else {
  const handler = createMcpHandler(build);
  http.createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = chunks.length ? Buffer.concat(chunks) : undefined;
    const request = new Request(`http://${req.headers.host}${req.url}`, {
      method: req.method, headers: req.headers, body: req.method === "GET" || req.method === "HEAD" ? undefined : body,
    });
    const response = await handler.fetch(request);
    res.writeHead(response.status, Object.fromEntries(response.headers));
    if (response.body) for await (const chunk of response.body) res.write(chunk);
    res.end();
  }).listen(Number(port), "127.0.0.1");
}
