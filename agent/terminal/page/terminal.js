// The sandbox's terminal: xterm.js on a WebSocket to /terminal/ws (common/terminal_protocol.h).
// Keystrokes go out as binary messages, the shell's output comes back as binary messages; the
// size follows the window. The cookie that ?token= set authenticates the WebSocket; closing the
// tab ends the shell.
'use strict';

(() => {
  const status = document.getElementById('status');
  const show = (text, ended) => {
    status.textContent = text;
    status.hidden = false;
    status.classList.toggle('ended', ended);
  };

  const term = new Terminal({ cursorBlink: true, scrollback: 10000, fontFamily: 'monospace' });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(document.getElementById('terminal'));
  fit.fit();

  const url = new URL('ws', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  url.search = new URLSearchParams({ cols: term.cols, rows: term.rows }).toString();
  const socket = new WebSocket(url);
  socket.binaryType = 'arraybuffer';
  const encoder = new TextEncoder();
  let exited = false;

  const sendControl = (message) => {
    if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  };
  const sendBytes = (bytes) => {
    if (socket.readyState === WebSocket.OPEN) socket.send(bytes);
  };

  // Flow control as xterm.js recommends: past a high watermark of output not yet rendered the
  // server is asked to pause (so the shell waits), and to resume once the terminal caught up.
  const highWater = 512 * 1024;
  const lowWater = 64 * 1024;
  let pending = 0;
  let paused = false;
  const written = (length) => {
    pending -= length;
    if (paused && pending < lowWater) {
      paused = false;
      sendControl({ type: 'resume' });
    }
  };

  socket.addEventListener('open', () => term.focus());
  socket.addEventListener('message', (event) => {
    if (typeof event.data === 'string') {
      const message = JSON.parse(event.data);
      if (message.type === 'exit') {
        exited = true;
        const how = message.signal ? `killed by ${message.signal}` : `exited with status ${message.exit_code}`;
        term.write(`\r\n[the shell ${how}]\r\n`);
        show(`shell ${how}`, true);
      } else if (message.type === 'error') {
        show(message.message, false);
      }
      return;
    }
    const bytes = new Uint8Array(event.data);
    pending += bytes.length;
    term.write(bytes, () => written(bytes.length));
    if (!paused && pending > highWater) {
      paused = true;
      sendControl({ type: 'pause' });
    }
  });
  socket.addEventListener('close', (event) => {
    term.options.disableStdin = true;
    if (!exited) show(`disconnected (${event.code}${event.reason ? ': ' + event.reason : ''})`, true);
  });

  term.onData((data) => sendBytes(encoder.encode(data)));
  term.onBinary((data) => sendBytes(Uint8Array.from(data, (c) => c.charCodeAt(0))));
  term.onResize(({ cols, rows }) => sendControl({ type: 'resize', cols, rows }));
  new ResizeObserver(() => fit.fit()).observe(document.getElementById('terminal'));
})();
