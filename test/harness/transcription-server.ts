import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/** What the server answers for one audio file: a transcript, or an error status with a body. */
export type ScriptedAnswer = { text: string } | { status: number; body: string };

export interface ReceivedRequest {
  path: string;
  authorization: string | undefined;
  model: string | undefined;
  language: string | undefined;
  filename: string | undefined;
  fileType: string | undefined;
  bytes: Buffer;
  /** Why the request was refused (400), if it was. */
  refused?: string;
}

/**
 * A scripted OpenAI-compatible transcription endpoint on loopback: `POST /v1/audio/transcriptions`
 * with a multipart body. It answers only for audio it was told about (`script(bytes, answer)`),
 * by the exact bytes of the uploaded file, and only with the expected model and key: anything
 * else is a 400 that says what was wrong. Every request is recorded.
 */
export class TranscriptionServer {
  readonly requests: ReceivedRequest[] = [];
  private readonly answers = new Map<string, ScriptedAnswer>();
  private readonly server: Server;
  private readonly expect: { model: string; apiKey: string };
  url = "";

  private constructor(expect: { model: string; apiKey: string }) {
    this.expect = expect;
    this.server = createServer((req, res) => {
      void this.handle(req).then(
        ({ status, body }) => res.writeHead(status, { "content-type": "application/json" }).end(body),
        (err: unknown) => res.writeHead(500, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: String(err) } })),
      );
    });
  }

  static async start(expect: { model: string; apiKey: string }): Promise<TranscriptionServer> {
    const s = new TranscriptionServer(expect);
    await new Promise<void>((resolve) => s.server.listen(0, "127.0.0.1", resolve));
    s.url = `http://127.0.0.1:${(s.server.address() as AddressInfo).port}`;
    return s;
  }

  /** The answer for an upload of exactly these bytes. */
  script(bytes: Buffer, answer: ScriptedAnswer): void {
    this.answers.set(bytes.toString("hex"), answer);
  }

  /** Requests whose file was exactly `bytes`. */
  requestsFor(bytes: Buffer): ReceivedRequest[] {
    return this.requests.filter((r) => r.bytes.equals(bytes));
  }

  private async handle(req: IncomingMessage): Promise<{ status: number; body: string }> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks);
    const record: ReceivedRequest = { path: req.url ?? "", authorization: req.headers.authorization, model: undefined, language: undefined, filename: undefined, fileType: undefined, bytes: Buffer.alloc(0) };
    this.requests.push(record);
    const refuse = (why: string): { status: number; body: string } => {
      record.refused = why;
      return { status: 400, body: JSON.stringify({ error: { message: why, type: "invalid_request_error" } }) };
    };
    if (req.method !== "POST" || record.path !== "/v1/audio/transcriptions") return { status: 404, body: JSON.stringify({ error: { message: `no route ${req.method} ${record.path}` } }) };
    const contentType = req.headers["content-type"] ?? "";
    if (!contentType.startsWith("multipart/form-data")) return refuse(`expected multipart/form-data, got ${contentType}`);
    // The multipart parser of fetch's Response, as a server framework would parse it.
    const form = await new Response(raw, { headers: { "content-type": contentType } }).formData();
    const file = form.get("file");
    const model = form.get("model");
    record.model = typeof model === "string" ? model : undefined;
    const language = form.get("language");
    record.language = typeof language === "string" ? language : undefined;
    if (!(file instanceof Blob)) return refuse("no file part");
    record.bytes = Buffer.from(await file.arrayBuffer());
    record.filename = (file as File).name;
    record.fileType = file.type;
    if (record.authorization !== `Bearer ${this.expect.apiKey}`) return refuse(`wrong authorization: ${record.authorization ?? "none"}`);
    if (record.model !== this.expect.model) return refuse(`wrong model: ${record.model ?? "none"}`);
    // The raw body holds the file's bytes as they are, not re-encoded.
    if (!raw.includes(record.bytes)) return refuse("the file part's bytes are not in the body as sent");
    const answer = this.answers.get(record.bytes.toString("hex"));
    if (!answer) return refuse(`no scripted transcript for these ${record.bytes.length} bytes`);
    return "text" in answer ? { status: 200, body: JSON.stringify({ text: answer.text }) } : { status: answer.status, body: answer.body };
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
