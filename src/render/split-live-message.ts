import type { ThreadTarget } from "../matrix/content.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import { LiveMessage, type LiveMessageOptions } from "./live-message.ts";
import { crashPoint } from "../process/crash-point.ts";
import { splitMarkdown } from "./split.ts";

export interface SplitLiveOptions extends LiveMessageOptions {
  attach?: (text: string) => Promise<void>;
  /** Every piece a previous run of the bot posted (after a restart): edited, not posted again. */
  eventIds?: Array<string | null> | undefined;
  /** Piece n's first post goes out with the transaction id `<txnBase>.<n>`: a repeat after a crash is the same event. */
  txnBase?: string | undefined;
  /** Called when piece `index` is first posted (the first reply is 0; continuations follow). */
  onPiecePosted?: (index: number, eventId: string) => void;
}

/** Continuation replies beyond this many are not posted; the whole text is attached as a file instead. */
const maxPieces = 5;

/** The `attach` of every backend's answers: the whole text as `answer.md` in the thread. */
export function attachAnswerFile(sender: Pick<MatrixSender, "sendFile">, target: ThreadTarget): (text: string) => Promise<void> {
  return async (text) => {
    await sender.sendFile(target, Buffer.from(text, "utf8"), "answer.md", "text/markdown");
  };
}

/**
 * A live reply that may outgrow one Matrix message: the text is split into pieces, each its
 * own live message in the thread (the first one is the reply; the others continue it). Nothing
 * is cut silently: past `maxPieces` the final text is uploaded whole as a file.
 */
export class SplitLiveMessage {
  private readonly opts: SplitLiveOptions;
  private readonly pieces: LiveMessage[] = [];

  constructor(opts: SplitLiveOptions) {
    this.opts = opts;
    this.pieces.push(
      new LiveMessage({
        ...opts,
        eventId: opts.eventIds?.[0] ?? opts.eventId ?? null,
        txnId: opts.txnBase ? `${opts.txnBase}.0` : undefined,
        onPosted: (id) => {
          opts.onPosted?.(id);
          opts.onPiecePosted?.(0, id);
        },
      }),
    );
  }

  /** Every piece's event id, in order (null: not posted yet). */
  get ids(): Array<string | null> {
    return this.pieces.map((p) => p.id);
  }

  get firstId(): string | null {
    return this.pieces[0]?.id ?? null;
  }

  get edits(): number {
    return this.pieces.reduce((n, p) => n + p.edits, 0);
  }

  update(markdown: string): void {
    this.layout(markdown, false).forEach((text, i) => this.piece(i).update(text));
  }

  async finish(markdown: string): Promise<void> {
    const texts = this.layout(markdown, true);
    // In order, so that continuation replies appear below the reply they continue.
    for (let i = 0; i < texts.length; i++) await this.piece(i).finish(texts[i] as string);
    if (splitMarkdown(markdown).length > maxPieces && this.opts.attach) await this.opts.attach(markdown);
  }

  async settle(): Promise<void> {
    await Promise.all(this.pieces.map((p) => p.settle()));
  }

  private layout(markdown: string, final: boolean): string[] {
    const texts = splitMarkdown(markdown);
    if (texts.length <= maxPieces) return texts.map((t, i) => (i < texts.length - 1 ? `${t}\n\n_(continued below)_` : t));
    const shown = texts.slice(0, maxPieces - 1).map((t) => `${t}\n\n_(continued below)_`);
    const note = final && this.opts.attach ? "_…the answer is too long for chat; the whole text is attached below._" : "_…the answer is long; the whole text will be attached when it is done._";
    return [...shown, note];
  }

  private piece(i: number): LiveMessage {
    while (this.pieces.length <= i) {
      const n = this.pieces.length;
      this.pieces.push(
        new LiveMessage({
          ...this.opts,
          eventId: this.opts.eventIds?.[n] ?? null,
          txnId: this.opts.txnBase ? `${this.opts.txnBase}.${n}` : undefined,
          onPosted: (id) => {
            this.opts.onPiecePosted?.(n, id);
            crashPoint("continuation");
          },
        }),
      );
    }
    return this.pieces[i] as LiveMessage;
  }
}
