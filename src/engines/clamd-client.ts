/** Where a clamd listens: a unix socket path or a TCP host and port. */
export type ClamdEndpoint = { socket: string } | { host: string; port: number };
