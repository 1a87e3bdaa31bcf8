import type { TranscriptionConfig } from "../config/transcription.ts";
import { addSecret } from "../log.ts";

/** A transcription that did not happen, said in one line: what failed and, when the service said, why. */
export class TranscriptionError extends Error {
  override name = "TranscriptionError";
}

export interface Audio {
  data: Buffer;
  /** The file's MIME type, e.g. `audio/ogg; codecs=opus`. */
  mime: string;
  filename: string;
}

/** File extensions for the formats the OpenAI API takes: it tells the format by the file's name. */
const extensions: Record<string, string> = {
  "audio/ogg": "ogg", "audio/opus": "ogg", "application/ogg": "ogg", "audio/mpeg": "mp3", "audio/mp3": "mp3",
  "audio/mp4": "m4a", "audio/x-m4a": "m4a", "audio/m4a": "m4a", "audio/aac": "m4a", "audio/webm": "webm",
  "audio/wav": "wav", "audio/x-wav": "wav", "audio/wave": "wav", "audio/flac": "flac", "audio/x-flac": "flac",
};

/** `name` with an extension the service recognises: Element's voice messages are called just "Voice message". */
export function uploadName(filename: string, mime: string): string {
  const base = filename.replace(/[\\/\r\n"]/g, "_").trim() || "voice";
  if (/\.(flac|mp3|mp4|mpeg|mpga|m4a|ogg|oga|opus|wav|webm)$/i.test(base)) return base;
  return `${base}.${extensions[mime.split(";")[0]?.trim().toLowerCase() ?? ""] ?? "ogg"}`;
}

/** The endpoint: `<baseUrl>/audio/transcriptions`, or baseUrl itself when it already names it. */
export function endpointOf(baseUrl: string): string {
  const base = baseUrl.replace(/\/+$/, "");
  return /\/audio\/transcriptions$/.test(base) ? base : `${base}/audio/transcriptions`;
}

/** The provider's own words from an error answer: OpenAI/Groq `{error:{message}}`, FastAPI `{detail}`, or the text. */
export function providerMessage(text: string): string {
  let said: unknown;
  try {
    const json = JSON.parse(text) as { error?: unknown; detail?: unknown; message?: unknown };
    const error = json.error as { message?: unknown } | string | undefined;
    said = (typeof error === "object" ? error?.message : error) ?? json.detail ?? json.message;
    if (said !== undefined && typeof said !== "string") said = JSON.stringify(said);
  } catch {
    said = text;
  }
  const line = String(said ?? "").replace(/\s+/g, " ").trim();
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}

/** Talks to one OpenAI-compatible `/audio/transcriptions` endpoint. */
export class Transcriber {
  readonly endpoint: string;
  readonly maxBytes: number;
  private readonly cfg: TranscriptionConfig;
  private readonly host: string;

  constructor(cfg: TranscriptionConfig & { baseUrl: string }) {
    this.cfg = cfg;
    this.endpoint = endpointOf(cfg.baseUrl);
    this.host = new URL(this.endpoint).host;
    this.maxBytes = cfg.maxBytes;
    addSecret(cfg.apiKey);
  }

  /** The text spoken in `audio`; throws TranscriptionError with the HTTP status and the provider's message. */
  async transcribe(audio: Audio): Promise<string> {
    const form = new FormData();
    form.append("file", new Blob([new Uint8Array(audio.data)], { type: audio.mime }), uploadName(audio.filename, audio.mime));
    form.append("model", this.cfg.model);
    form.append("response_format", "json");
    if (this.cfg.language) form.append("language", this.cfg.language);
    const headers: Record<string, string> = this.cfg.apiKey ? { authorization: `Bearer ${this.cfg.apiKey}` } : {};
    const signal = AbortSignal.timeout(this.cfg.timeoutMs);
    let status: number;
    let text: string;
    try {
      const res = await fetch(this.endpoint, { method: "POST", body: form, headers, signal });
      status = res.status;
      text = await res.text();
    } catch (err) {
      if (signal.aborted) throw new TranscriptionError(`${this.host} did not answer within ${Math.round(this.cfg.timeoutMs / 1000)} s (transcription.timeoutMs)`);
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new TranscriptionError(this.scrub(`cannot reach ${this.host}: ${cause?.code ?? cause?.message ?? (err as Error).message}`));
    }
    if (status < 200 || status >= 300) {
      const said = providerMessage(text);
      throw new TranscriptionError(this.scrub(`${this.host} answered HTTP ${status}${said ? `: ${said}` : ""}`));
    }
    let transcript: unknown;
    try {
      transcript = (JSON.parse(text) as { text?: unknown }).text;
    } catch {
      // response_format "json" was asked for; a server that answers plain text anyway is taken at its word.
      transcript = text;
    }
    if (typeof transcript !== "string") throw new TranscriptionError(`${this.host} answered without a transcript (no "text" in its answer)`);
    return transcript.trim();
  }

  /** A provider may quote the key it was given (e.g. "Incorrect API key provided: sk-…"): never into a room. */
  private scrub(line: string): string {
    const key = this.cfg.apiKey;
    return key && key.length >= 4 ? line.split(key).join("[redacted]") : line;
  }
}

/** A transcriber when `transcription.baseUrl` is set; undefined means voice messages get the how-to. */
export function createTranscriber(cfg: TranscriptionConfig | undefined): Transcriber | undefined {
  return cfg?.baseUrl ? new Transcriber({ ...cfg, baseUrl: cfg.baseUrl }) : undefined;
}
