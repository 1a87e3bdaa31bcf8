/** Plain words for what went wrong and what the person can do about it. */
export function errorAdvice(name: string): string {
  switch (name) {
    case "ProviderAuthError":
      return "The model provider refused the credentials: check the provider's API key in the OpenCode configuration.";
    case "APIError":
      return "The model provider answered with an error. Write a follow-up in this thread to try again, or pick another model with `!oc model <provider/model>`.";
    case "MessageOutputLengthError":
      return "The answer hit the model's output limit. Ask for a shorter answer, or continue with a follow-up.";
    case "ContextOverflowError":
      return "The conversation no longer fits the model's context. Start a fresh session with `!oc new`.";
    case "ContentFilterError":
      return "The provider's content filter stopped the answer. Rephrase the prompt and try again.";
    default:
      return "Write a follow-up in this thread to try again.";
  }
}

export function describeError(err: unknown): string {
  if (err === undefined || err === null) return "no answer from the server";
  if (err instanceof Error) return err.message;
  if (typeof err === "object") {
    const o = err as { data?: { message?: string }; message?: string; name?: string; errors?: unknown };
    return o.data?.message ?? o.message ?? o.name ?? JSON.stringify(err).slice(0, 300);
  }
  return String(err);
}
