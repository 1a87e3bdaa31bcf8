declare const unavailable: Record<string, any>;
export = unavailable;
