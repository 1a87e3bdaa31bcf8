import { z } from "zod";

// `opencode.servers`: more OpenCode servers beside the one of `opencode.serverUrl` (or the
// embedded one), each by name; rooms are bound to one with `!oc server <name>`. A map has no
// natural environment-variable form, so this section is file-only. The top-level server is
// always there under the name `default`.

const httpUrl = z.string().url().refine((u) => /^https?:\/\//.test(u), "must be an http(s) URL");
// A directory on the server's machine: absolute, since nothing of the bot's own can resolve it.
const remoteDir = z.string().min(1).refine((p) => p.startsWith("/"), "must be an absolute path on that server's machine");

/** The name of the server of `opencode.serverUrl` (or the embedded one). */
export const primaryServerName = "default";

export const opencodeServerSchema = z
  .object({
    // Where `opencode serve` answers, as the bot reaches it (e.g. https://gpu-box.example.org behind TLS).
    url: httpUrl,
    // Basic auth, when that server sets OPENCODE_SERVER_PASSWORD (user name default: opencode).
    username: z.string().optional(),
    password: z.string().optional(),
    // Directories on that machine `!oc project` may point a room at. Default: [workspaceDir].
    projectRoots: z.array(remoteDir).min(1).optional(),
    // The directory new sessions work in on that machine. Default: the first project root, else opencode.workspaceDir.
    workspaceDir: remoteDir.optional(),
    // Rooms not bound with `!oc server` use this server (at most one may say so). Default: the server `default`.
    default: z.boolean().default(false),
  })
  .strict();

export type OpencodeServerConfig = z.infer<typeof opencodeServerSchema>;

// A section whose keys are all commented out reads as null: same as leaving it out.
export const opencodeServersSchema = z.preprocess(
  (v) => v ?? undefined,
  z
    .record(z.string(), opencodeServerSchema)
    .superRefine((servers, ctx) => {
      // A name is said in chat (`!oc server <name>`) and stored with each thread.
      for (const name of Object.keys(servers)) {
        if (!/^[a-z][a-z0-9-]{0,31}$/.test(name)) ctx.addIssue({ code: "custom", path: [name], message: "must be a short lower-case name (letters, digits, -)" });
      }
      if (primaryServerName in servers) {
        ctx.addIssue({ code: "custom", path: [primaryServerName], message: `"${primaryServerName}" is the server of opencode.serverUrl (or the embedded one); give this one another name` });
      }
      const defaults = Object.entries(servers).filter(([, s]) => s.default).map(([name]) => name);
      if (defaults.length > 1) ctx.addIssue({ code: "custom", message: `only one server may be the rooms' default; ${defaults.join(", ")} all say default: true` });
    })
    .optional(),
);
