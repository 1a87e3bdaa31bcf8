import type { CommandSpec } from "../../commands/types.ts";
import type { OpencodeBackend } from "../backend.ts";
import { fileCommands } from "./file-commands.ts";
import { permissionCommands } from "./permission-commands.ts";
import { sessionCommands } from "./session-commands.ts";
import { settingCommands } from "./setting-commands.ts";

export function opencodeCommands(oc: OpencodeBackend): CommandSpec[] {
  return [...sessionCommands(oc), ...permissionCommands(), ...fileCommands(oc), ...settingCommands(oc)];
}
