import { createLogger } from './logger';
import { armShutdownDeadline } from './bootstrap';

describe('armShutdownDeadline', () => {
  const logger = createLogger({ service: 'test', version: '0', level: 'silent' });
  let exit: jest.SpyInstance;

  beforeEach(() => {
    jest.useFakeTimers();
    exit = jest.spyOn(process, 'exit').mockImplementation((() => undefined) as never);
  });
  afterEach(() => {
    exit.mockRestore();
    jest.useRealTimers();
    process.removeAllListeners('SIGTERM');
    process.removeAllListeners('SIGINT');
  });

  it('exits with status 1 when draining outlasts the deadline after SIGTERM', () => {
    armShutdownDeadline(logger, 5_000);
    jest.advanceTimersByTime(60_000);
    expect(exit).not.toHaveBeenCalled(); // no signal, no deadline

    process.emit('SIGTERM', 'SIGTERM');
    jest.advanceTimersByTime(4_999);
    expect(exit).not.toHaveBeenCalled();
    jest.advanceTimersByTime(1);
    expect(exit).toHaveBeenCalledWith(1);
  });

  it('arms on SIGINT too, once', () => {
    armShutdownDeadline(logger, 1_000);
    process.emit('SIGINT', 'SIGINT');
    process.emit('SIGINT', 'SIGINT');
    jest.advanceTimersByTime(1_000);
    expect(exit).toHaveBeenCalledTimes(1);
  });
});
