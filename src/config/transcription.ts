import { z } from "zod";

// `transcription`: an OpenAI-compatible speech-to-text endpoint (`POST <baseUrl>/audio/transcriptions`:
// OpenAI, Groq, a local faster-whisper server) that turns voice messages into prompts. Without
// `baseUrl` voice messages are answered with how to enable it (README: "Voice messages").

const httpUrl = z
  .string()
  .url("must be an http(s) URL such as https://api.openai.com/v1")
  .refine((u) => /^https?:\/\//i.test(u), "must be an http(s) URL such as https://api.openai.com/v1");

/** OpenAI's own limit for one upload; larger voice messages are refused before they are downloaded. */
export const defaultMaxBytes = 25 * 1024 * 1024;

const section = z
  .object({
    // e.g. https://api.openai.com/v1, https://api.groq.com/openai/v1, http://127.0.0.1:8000/v1.
    // A URL that already ends in /audio/transcriptions is used as it is.
    baseUrl: httpUrl.optional(),
    // Bearer token of the endpoint (a secret: scrubbed from logs and from error messages).
    apiKey: z.string().min(1).optional(),
    // whisper-1 (OpenAI), whisper-large-v3 (Groq), Systran/faster-whisper-small (a local server)…
    model: z.string().min(1).default("whisper-1"),
    // ISO-639-1 code of the spoken language (en, de, …); unset: the service detects it.
    language: z.string().regex(/^[a-z]{2,3}$/i, "must be a language code such as en or de").optional(),
    // The whole request: upload, transcription and answer.
    timeoutMs: z.number().int().min(1000).default(60_000),
    // Larger voice messages are refused (with their size) and never downloaded.
    maxBytes: z.number().int().min(1024).max(100 * 1024 * 1024, "at most 100 MB (104857600)").default(defaultMaxBytes),
  })
  .strict()
  .refine((t) => t.apiKey === undefined || t.baseUrl !== undefined, {
    message: "transcription.apiKey is set but not the endpoint: set transcription.baseUrl too (e.g. https://api.openai.com/v1)",
    path: ["baseUrl"],
  });

export type TranscriptionConfig = z.infer<typeof section>;

// A section whose keys are all commented out reads as null: same as leaving it out.
export const transcriptionSchema = z.preprocess((v) => v ?? undefined, section.optional());

/** The environment variables of the section, spread into the list of overrides (src/config/load.ts). */
export const transcriptionEnv = [
  { env: "TRANSCRIPTION_BASE_URL", path: "transcription.baseUrl", kind: "string" },
  { env: "TRANSCRIPTION_API_KEY", path: "transcription.apiKey", kind: "string" },
  { env: "TRANSCRIPTION_MODEL", path: "transcription.model", kind: "string" },
  { env: "TRANSCRIPTION_LANGUAGE", path: "transcription.language", kind: "string" },
  { env: "TRANSCRIPTION_TIMEOUT_MS", path: "transcription.timeoutMs", kind: "number" },
  { env: "TRANSCRIPTION_MAX_BYTES", path: "transcription.maxBytes", kind: "number" },
] as const;
