// The permission request's text is the engine's (src/turns/permission-text.ts): every backend's
// requests read alike. Kept here so OpenCode's modules import it from beside them.
export * from "../turns/permission-text.ts";
