import type { CommandSpec } from "../../commands/types.ts";
import type { OpencodeBackend } from "../backend.ts";
import { fileCommands } from "./file-commands.ts";
import { historyCommands } from "./history-commands.ts";
import { nowCommand } from "./now-command.ts";
import { permissionCommands } from "./permission-commands.ts";
import { powerCommands } from "./power-commands.ts";
import { questionCommands } from "./question-commands.ts";
import { scheduleCommands } from "./schedule-commands.ts";
import { serverCommands } from "./server-commands.ts";
import { sessionCommands } from "./session-commands.ts";
import { settingCommands } from "./setting-commands.ts";
import { worktreeCommands } from "./worktree-commands.ts";

export function opencodeCommands(oc: OpencodeBackend): CommandSpec[] {
  return [
    ...sessionCommands(oc),
    ...historyCommands(oc),
    ...powerCommands(oc),
    nowCommand(oc),
    ...worktreeCommands(oc),
    ...scheduleCommands(oc),
    ...permissionCommands((t) => oc.threadServer(t).permissions),
    ...questionCommands((t) => oc.threadServer(t).questions),
    ...fileCommands(oc),
    ...settingCommands(oc),
    ...serverCommands(oc),
  ];
}
