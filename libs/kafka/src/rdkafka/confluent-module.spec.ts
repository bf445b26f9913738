import { boundConnectWait, CONNECT_METADATA_TIMEOUT_MS, type ConnectingClient } from './confluent-module';

describe('boundConnectWait', () => {
  class Client implements ConnectingClient {
    static calls: unknown[] = [];
    connect(metadata: Record<string, unknown> | null | undefined): unknown {
      Client.calls.push(metadata);
      return this;
    }
  }

  it('gives a connect without metadata options (the KafkaJS-compatible clients) the bounded wait', () => {
    boundConnectWait(Client.prototype);
    boundConnectWait(Client.prototype);
    const client = new Client();
    expect(client.connect(null)).toBe(client);
    client.connect(undefined);
    client.connect({ timeout: 1_000, topic: 't' });
    expect(Client.calls).toEqual([
      { timeout: CONNECT_METADATA_TIMEOUT_MS },
      { timeout: CONNECT_METADATA_TIMEOUT_MS },
      { timeout: 1_000, topic: 't' },
    ]);
  });
});
