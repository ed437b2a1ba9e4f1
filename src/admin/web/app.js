// tokengate's admin page. It talks only to the JSON API of this listener (/api/v1/...), with
// the caller's email and API token as HTTP Basic credentials. The credential lives in this
// tab's sessionStorage (it survives a reload, and is gone when the tab closes) and in memory;
// never in localStorage or a cookie. All text from the server is put into the page with
// textContent, never parsed as HTML.
'use strict';

(() => {
  const CREDENTIAL_KEY = 'tokengate.credential';
  const $ = (id) => document.getElementById(id);

  /** What the page knows about the signed-in caller. */
  const state = {
    credential: null, // {email, token}
    me: null, // AccountView
    policy: null, // PolicyView
    tab: 'tokens',
    pendingRevoke: null, // the TokenView the revoke dialog is about
    pendingRotate: null,
    pendingRevokeAll: null, // an email
    pendingCap: null, // the dry run the cap-expiry dialog shows
    createFor: null, // 'self' or 'other'
  };

  // ---- the credential: sessionStorage only ----

  function loadCredential() {
    try {
      const stored = JSON.parse(sessionStorage.getItem(CREDENTIAL_KEY) || 'null');
      if (stored && typeof stored.email === 'string' && typeof stored.token === 'string') return stored;
    } catch (_) {
      // An unreadable entry is as good as none.
    }
    return null;
  }

  function saveCredential(credential) {
    sessionStorage.setItem(CREDENTIAL_KEY, JSON.stringify(credential));
  }

  function forgetCredential() {
    sessionStorage.removeItem(CREDENTIAL_KEY);
  }

  function basicAuthorization({ email, token }) {
    const bytes = new TextEncoder().encode(`${email}:${token}`);
    let binary = '';
    for (const byte of bytes) binary += String.fromCharCode(byte);
    return `Basic ${btoa(binary)}`;
  }

  // ---- the API ----

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  /**
   * Calls the admin API. `X-Requested-With` asks the API to leave out its Basic challenge, so
   * that a refused credential shows this page's message instead of the browser's sign-in box.
   */
  async function api(method, path, body, credential = state.credential) {
    const headers = {
      Authorization: basicAuthorization(credential),
      'X-Requested-With': 'tokengate-web',
      Accept: 'application/json',
    };
    const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (_) {
      throw new ApiError(0, 'network', 'The gateway did not answer; check that it is running and try again.');
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const detail = data && data.error ? data.error : {};
      const error = new ApiError(response.status, detail.code || 'http', detail.message || `HTTP ${response.status}`);
      if (response.status === 401 && credential === state.credential && state.me) {
        signOut('You were signed out: the token this tab signed in with is no longer valid (revoked, expired or blocked).');
      }
      throw error;
    }
    return data;
  }

  // ---- small DOM helpers ----

  /** Builds an element; children that are not nodes become text nodes (never HTML). */
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key === 'dataset') Object.assign(node.dataset, value);
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function showError(id, error) {
    const node = $(id);
    if (!error) {
      node.hidden = true;
      node.textContent = '';
      return;
    }
    node.textContent = error instanceof Error ? error.message : String(error);
    node.hidden = false;
  }

  function showBanner(message, kind = 'ok') {
    const banner = $('banner');
    banner.textContent = message || '';
    banner.classList.toggle('failed', kind === 'error');
    banner.hidden = !message;
  }

  /** Shows an error in its dialog, or in the banner when the dialog was closed meanwhile. */
  function dialogError(dialogId, errorId, error) {
    if (!state.me) return; // signed out: the sign-in form says why
    if ($(dialogId).open) showError(errorId, error);
    else showBanner(error.message, 'error');
  }

  /** Runs `work` with `button` disabled, so a double click does not act twice. */
  async function busy(button, work) {
    button.disabled = true;
    try {
      return await work();
    } finally {
      button.disabled = false;
    }
  }

  // ---- times and durations ----

  const pad = (n) => String(n).padStart(2, '0');

  /**
   * Every time the page shows is UTC, minutes precision, the zone stated: 2026-12-07 14:03 UTC.
   * One format and one zone everywhere, the same as the date fields (typed as YYYY-MM-DD, UTC
   * days), the usage days and the command line.
   */
  function formatTime(iso) {
    const d = new Date(iso);
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())} UTC`;
  }

  const relativeFormat = new Intl.RelativeTimeFormat('en', { numeric: 'auto' });

  /** "3 days ago", "in 29 days". */
  function relativeTime(iso) {
    const seconds = (new Date(iso).getTime() - Date.now()) / 1000;
    const steps = [[60, 'second'], [60, 'minute'], [24, 'hour'], [30, 'day'], [12, 'month'], [Infinity, 'year']];
    let value = seconds;
    for (const [size, unit] of steps) {
      if (Math.abs(value) < size) return relativeFormat.format(Math.round(value), unit);
      value /= size;
    }
    return formatTime(iso);
  }

  function timeCell(iso, fallback) {
    if (!iso) return el('td', {}, el('span', { class: 'sub' }, fallback));
    return el('td', {}, el('time', { datetime: iso, title: iso }, formatTime(iso)), el('span', { class: 'sub' }, relativeTime(iso)));
  }

  /** A lifetime in words: 604800 → "7 days", 31536000 → "1 year". */
  function lifetimeWords(seconds) {
    const day = 86400;
    if (seconds % (365 * day) === 0) {
      const years = seconds / (365 * day);
      return years === 1 ? '1 year' : `${years} years`;
    }
    if (seconds % day === 0) {
      const days = seconds / day;
      return days === 1 ? '1 day' : `${days} days`;
    }
    const hours = Math.round(seconds / 3600);
    return hours === 1 ? '1 hour' : `${hours} hours`;
  }

  // ---- typed dates: YYYY-MM-DD, a UTC day ----
  //
  // Every date field is a text field in the format the page shows (2026-12-07), never an
  // <input type="date">, which a browser renders in its own locale's format (12/07/2026,
  // 07.12.2026): what is typed, what is shown and what the command line takes are one format.
  // A date means a UTC day, whatever the browser's zone.

  /** A typed date: YYYY-MM-DD, or its 8 digits alone (a phone's number pad may have no hyphen). */
  const DATE_SHAPE = /^(\d{4})-?(\d{2})-?(\d{2})$/;
  const MONTH_NAMES = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
  /** Years a date field takes: tokens are newer than 1970, and RFC 3339 ends with 9999. */
  const FIRST_YEAR = 1970;
  const LAST_YEAR = 9999;

  /**
   * Reads what was typed into a date field: `{ date: 'YYYY-MM-DD' }` for a day of the calendar,
   * `{ date: '' }` when nothing was typed, else `{ error }`, a sentence that says what is wrong.
   */
  function parseDay(text) {
    const typed = text.trim();
    if (!typed) return { date: '' };
    const match = DATE_SHAPE.exec(typed);
    if (!match) return { error: `“${typed}” is not a date: type it as YYYY-MM-DD, for example 2026-12-07.` };
    const date = `${match[1]}-${match[2]}-${match[3]}`;
    const [year, month, day] = match.slice(1).map(Number);
    if (year < FIRST_YEAR || year > LAST_YEAR) return { error: `${date} is not a date this page takes: the year must be from ${FIRST_YEAR} to ${LAST_YEAR}.` };
    if (month < 1 || month > 12) return { error: `${date} is not a date: the month (MM) must be from 01 to 12.` };
    const days = new Date(Date.UTC(year, month, 0)).getUTCDate();
    if (day < 1 || day > days) return { error: `${date} is not a date: ${MONTH_NAMES[month - 1]} ${year} has ${days} days.` };
    return { date };
  }

  /** Shows a date field's error next to it (or clears it), and marks the field invalid for assistive technology. */
  function markDateField(input, message) {
    input.setCustomValidity(message || '');
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
    showError(`${input.id}-error`, message || null);
  }

  /**
   * Checks a date field: its UTC day ('YYYY-MM-DD', or '' when empty), or null when it holds
   * no valid day, and the field then says why. `rule(date)` is the field's own bound: a
   * message, or '' when the day is within it. A day typed as 8 digits is shown as YYYY-MM-DD.
   */
  function checkDateField(input, rule) {
    const { date, error } = parseDay(input.value);
    let message = error || '';
    if (!message && date) {
      if (input.value !== date) input.value = date;
      if (rule) message = rule(date);
    }
    markDateField(input, message);
    return message ? null : date;
  }

  /** Clears the marks of the date fields in `form` (after a reset). */
  function clearDateFields(form) {
    for (const input of form.querySelectorAll('input.date')) markDateField(input, '');
  }

  /**
   * A date field is checked when its form is submitted, not when the person leaves it: a
   * message appearing as the field loses focus to the submit button would move that button
   * from under the pointer, and the click would be lost. Once found wrong, the field is
   * checked again as they type, so that the message goes as soon as the day is right (and no
   * other message appears half-way through typing).
   */
  function wireDateField(input, rule) {
    const recheck = () => {
      if (input.getAttribute('aria-invalid') !== 'true') return;
      const { date, error } = parseDay(input.value);
      if (!error && !(date && rule && rule(date))) markDateField(input, '');
    };
    // `change` too: a field emptied or filled in other ways than typing (autofill, a script).
    input.addEventListener('input', recheck);
    input.addEventListener('change', recheck);
  }

  /** `date` (YYYY-MM-DD) `offset` days later, as YYYY-MM-DD; null past the year 9999. */
  function addUtcDays(date, offset) {
    const [year, month, day] = date.split('-').map(Number);
    const moved = new Date(Date.UTC(year, month - 1, day + offset));
    return moved.getUTCFullYear() > LAST_YEAR ? null : moved.toISOString().slice(0, 10);
  }

  /**
   * The RFC 3339 instant a UTC day starts, `offsetDays` later: 2026-12-07 is
   * 2026-12-07T00:00:00Z. Null past the year 9999 (RFC 3339's last).
   */
  function dayStart(date, offsetDays = 0) {
    const day = addUtcDays(date, offsetDays);
    return day === null ? null : `${day}T00:00:00Z`;
  }

  /** The last second of a UTC day, as RFC 3339: 2026-12-07 is 2026-12-07T23:59:59Z. */
  function dayEnd(date) {
    return `${date}T23:59:59Z`;
  }

  /** The UTC day of the instant `ms` (milliseconds since the epoch), as YYYY-MM-DD. */
  function utcDate(ms) {
    return new Date(Math.min(ms, Date.UTC(LAST_YEAR, 11, 31))).toISOString().slice(0, 10);
  }

  // ---- token tables ----

  function isLive(token) {
    return token.status === 'active' || token.status === 'blocked';
  }

  /** Whether this tab signed in with `token` (the display prefix is the secret's beginning). */
  function isThisSession(token) {
    return (
      state.credential !== null &&
      token.user.toLowerCase() === state.credential.email.toLowerCase() &&
      state.credential.token.startsWith(token.prefix)
    );
  }

  function statusCell(token) {
    const cell = el('td', {}, el('span', { class: `status status-${token.status}` }, token.status));
    if (token.status === 'active' && token.revoked_at) {
      cell.append(el('span', { class: 'sub' }, `ends ${formatTime(token.revoked_at)} (rotated)`));
    } else if (token.status === 'revoked' && token.revoked_at) {
      cell.append(el('span', { class: 'sub' }, `${formatTime(token.revoked_at)}${token.revoked_by ? ` by ${token.revoked_by}` : ''}`));
    } else if (token.status === 'blocked') {
      cell.append(el('span', { class: 'sub' }, 'the account may not hold tokens'));
    }
    const refused = refusedWords(token);
    if (refused) cell.append(el('span', { class: 'sub refused', title: 'attempts with this token while it did not work' }, refused));
    return cell;
  }

  /** Attempts with a dead token: "refused 3× · last 2026-12-01 14:03 UTC from 10.0.0.7 GET /x". */
  function refusedWords(token) {
    if (!token.refused_count) return '';
    let words = `refused ${token.refused_count}×`;
    if (token.refused_last_at) {
      words += ` · last ${formatTime(token.refused_last_at)}`;
      if (token.refused_last_ip) words += ` from ${token.refused_last_ip}`;
      const request = [token.refused_last_method, token.refused_last_path].filter(Boolean).join(' ');
      if (request) words += ` ${request}`;
    }
    return words;
  }

  function lastUsedCell(token) {
    if (!token.last_used_at) return el('td', {}, el('span', { class: 'sub' }, 'never used'));
    const cell = timeCell(token.last_used_at);
    const how = [token.last_used_method, token.last_used_path].filter(Boolean).join(' ');
    cell.append(el('span', { class: 'sub mono' }, [how, token.last_used_ip].filter(Boolean).join(' · ')));
    return cell;
  }

  function scopesCell(token) {
    if (token.scopes.length === 0) return el('td', {}, el('span', { class: 'sub' }, 'none'));
    return el('td', {}, token.scopes.map((scope) => el('span', { class: 'scope' }, scope)));
  }

  /** One row of a token table; `withOwner` adds the owner column (Token Manager). */
  function tokenRow(token, { withOwner, actions }) {
    const classes = [isLive(token) ? '' : 'dead', isThisSession(token) ? 'this-session' : ''].filter(Boolean).join(' ');
    const buttons = [];
    if (isLive(token)) {
      if (actions.includes('rotate') && token.rotated_to === null) {
        buttons.push(el('button', { type: 'button', class: 'small', dataset: { action: 'rotate' }, onclick: () => openRotate(token) }, 'Rotate'));
      }
      buttons.push(
        el('button', { type: 'button', class: 'small danger-outline', dataset: { action: 'revoke' }, onclick: () => openRevoke(token) }, 'Revoke'),
      );
    }
    return el(
      'tr',
      { class: classes || null, dataset: { tokenId: token.id, tokenName: token.name, status: token.status } },
      withOwner ? el('td', { class: 'owner' }, token.user) : null,
      el('td', { class: 'name' }, el('span', { class: 'token-name' }, token.name), token.description ? el('span', { class: 'sub' }, token.description) : null),
      el('td', {}, el('code', { class: 'prefix' }, `${token.prefix}…`)),
      timeCell(token.created_at),
      lastUsedCell(token),
      usageCell(token),
      token.expires_at ? timeCell(token.expires_at) : el('td', {}, el('span', { class: 'sub' }, 'never expires')),
      scopesCell(token),
      statusCell(token),
      el('td', { class: 'actions' }, buttons),
    );
  }

  function fillTable(tableId, emptyId, tokens, options) {
    const body = $(tableId).querySelector('tbody');
    body.replaceChildren(...tokens.map((token) => tokenRow(token, options)));
    $(emptyId).hidden = tokens.length > 0;
  }

  // ---- usage: a sparkline of 30 days in each token row, and the usage dialog ----
  //
  // The listing gives each token's total (`requests_30d`); the bars need its per-day counts,
  // one usage request per token. Those are made only for rows that come near the screen
  // (a table may hold thousands of tokens), a few at a time, after the table is drawn: the
  // table never waits for them. Idle tokens (a total of 0) need no request at all.

  /** The days a row's sparkline covers: the window of the listing's `requests_30d`. */
  const SPARK_DAYS = 30;
  /** Usage requests in flight at most, so a long table does not flood the admin listener. */
  const USAGE_PARALLEL = 4;
  /** The usage document's outcomes, in its order: the usage table's columns. */
  const OUTCOMES = ['2xx', '3xx', '4xx', '5xx', 'forbidden', 'limited', 'refused'];
  const SVG_NS = 'http://www.w3.org/2000/svg';
  /** Bar geometry in SVG user units; the stylesheet sizes the drawing. */
  const BAR = { width: 2, gap: 1, height: 24 };

  /**
   * Builds an SVG element. Bars are sized with SVG attributes, not `style`: presentation
   * attributes are not styles, so the page's `style-src 'self'` has nothing to refuse.
   */
  function svgEl(tag, attributes = {}, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
    for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    return node;
  }

  const requestsWords = (count) => `${count} ${count === 1 ? 'request' : 'requests'}`;

  /**
   * Requests per UTC day over the `days` days ending today, oldest first: the usage document
   * leaves out days without requests, and the gateway counts by UTC day (not the browser's).
   * Today is the browser's UTC date, or a later day the server already counted, so that a
   * browser clock running behind still puts today's requests on the last bar.
   */
  function dailyCounts(days, rows) {
    let today = new Date().toISOString().slice(0, 10);
    for (const row of rows) if (row.day > today) today = row.day;
    const counts = new Map();
    for (let i = days - 1; i >= 0; i -= 1) counts.set(addUtcDays(today, -i), 0);
    for (const row of rows) if (counts.has(row.day)) counts.set(row.day, counts.get(row.day) + row.requests);
    return [...counts].map(([day, requests]) => ({ day, requests }));
  }

  /** Draws one bar per day into `svg`, scaled to the busiest day; each bar names its day. */
  function drawBars(svg, counts) {
    const busiest = Math.max(1, ...counts.map((c) => c.requests));
    svg.setAttribute('viewBox', `0 0 ${counts.length * (BAR.width + BAR.gap) - BAR.gap} ${BAR.height}`);
    const bars = counts.map(({ day, requests }, i) => {
      // A day with requests is at least 3 units high, so one request beside thousands still
      // shows; a day without requests is a 1-unit tick, so the 30 days stay readable.
      const height = requests === 0 ? 1 : Math.max(3, Math.round((requests / busiest) * BAR.height));
      return svgEl(
        'rect',
        {
          class: requests === 0 ? 'bar empty' : 'bar',
          x: i * (BAR.width + BAR.gap),
          y: BAR.height - height,
          width: BAR.width,
          height,
          'data-day': day,
          'data-requests': requests,
        },
        svgEl('title', {}, `${day} (UTC): ${requestsWords(requests)}`),
      );
    });
    svg.replaceChildren(...bars);
  }

  /** The row's total and sparkline, one button that opens the usage dialog. */
  function usageCell(token) {
    const known = typeof token.requests_30d === 'number';
    const spark = svgEl('svg', { class: 'spark', 'aria-hidden': 'true', focusable: 'false', 'data-state': 'pending' });
    const button = el(
      'button',
      { type: 'button', class: 'usage-open', dataset: { action: 'usage' }, onclick: () => openUsage(token) },
      el('span', { class: 'usage-total' }, known ? token.requests_30d : '–'),
      spark,
    );
    labelUsage(button, token, known ? token.requests_30d : null);
    if (token.requests_30d === 0) {
      drawBars(spark, dailyCounts(SPARK_DAYS, []));
      spark.dataset.state = 'ready';
    } else {
      watchSparkline(spark, () => loadSparkline(spark, button, token));
    }
    return el('td', { class: 'usage' }, button);
  }

  function labelUsage(button, token, total) {
    const words = total === null ? 'Requests in 30 days' : `${requestsWords(total)} in 30 days`;
    button.setAttribute('aria-label', `${words} with “${token.name}”: show its usage by day and route`);
    button.title = `${words} (UTC days, today included): show by day and route`;
  }

  /** Sparklines waiting to come near the screen, each with what loads it. */
  const sparksWaiting = new Map();
  /** Sparklines of rows being built, not yet in their table. */
  let sparksBuilt = [];
  const sparkObserver =
    'IntersectionObserver' in window
      ? new IntersectionObserver(sparksNearScreen, { rootMargin: '200px 0px' })
      : null;

  function watchSparkline(svg, load) {
    // A table is filled right after its rows are built: the rows are watched from then on.
    if (sparksBuilt.length === 0) queueMicrotask(watchBuiltSparklines);
    sparksBuilt.push([svg, load]);
  }

  function watchBuiltSparklines() {
    // Rows that a refill took away are forgotten here, so that the tables need not know.
    for (const waiting of sparksWaiting.keys()) {
      if (!waiting.isConnected) forgetSparkline(waiting);
    }
    for (const [svg, load] of sparksBuilt) {
      if (!svg.isConnected) continue;
      if (sparkObserver) {
        sparksWaiting.set(svg, load);
        sparkObserver.observe(svg);
      } else {
        queueUsage(load); // no way to tell what is on screen: every row, still a few at a time
      }
    }
    sparksBuilt = [];
  }

  function forgetSparkline(svg) {
    sparkObserver?.unobserve(svg);
    sparksWaiting.delete(svg);
  }

  function sparksNearScreen(entries) {
    for (const entry of entries) {
      const svg = entry.target;
      const load = sparksWaiting.get(svg);
      if (!svg.isConnected || !load) forgetSparkline(svg);
      else if (entry.isIntersecting) {
        forgetSparkline(svg);
        queueUsage(load);
      }
    }
  }

  const usageQueue = [];
  let usageRunning = 0;

  /** Runs `load` once fewer than USAGE_PARALLEL usage requests are in flight. */
  function queueUsage(load) {
    usageQueue.push(load);
    startUsageLoads();
  }

  function startUsageLoads() {
    while (usageRunning < USAGE_PARALLEL && usageQueue.length > 0) {
      const load = usageQueue.shift();
      usageRunning += 1;
      load().finally(() => {
        usageRunning -= 1;
        startUsageLoads();
      });
    }
  }

  async function loadSparkline(svg, button, token) {
    // The row was refilled, or the tab signed out, while it waited its turn.
    if (!svg.isConnected || !state.me) return;
    try {
      const usage = await api('GET', `/api/v1/tokens/${token.id}/usage?days=${SPARK_DAYS}`);
      drawBars(svg, dailyCounts(SPARK_DAYS, usage.rows));
      svg.dataset.state = 'ready';
      // The same window as the listing's requests_30d, read later: the newer total.
      button.querySelector('.usage-total').textContent = usage.total;
      labelUsage(button, token, usage.total);
    } catch (error) {
      // One row's bars are not worth an alert: the row says it, the dialog shows the error.
      svg.dataset.state = 'failed';
      button.title = `The daily counts did not load (${error.message}): open to retry`;
    }
  }

  /** The token the usage dialog shows, and a counter so that only the latest answer is shown. */
  let usageToken = null;
  let usageRequests = 0;

  function openUsage(token) {
    usageToken = token;
    $('usage-name').textContent = `“${token.name}”`;
    $('usage-about').textContent = `${token.user} · ${token.prefix}…`;
    $('usage-days').value = String(SPARK_DAYS);
    $('usage-dialog').showModal();
    $('usage-days').focus();
    return loadUsage();
  }

  async function loadUsage() {
    const token = usageToken;
    if (!token) return;
    const days = Number($('usage-days').value);
    const request = ++usageRequests;
    showError('usage-error', null);
    $('usage-summary').textContent = 'Loading…';
    $('usage-table').setAttribute('aria-busy', 'true');
    try {
      const usage = await api('GET', `/api/v1/tokens/${token.id}/usage?days=${days}`);
      if (request === usageRequests) showUsage(usage);
    } catch (error) {
      if (request !== usageRequests) return;
      clearUsage();
      if (state.me) showError('usage-error', error);
    } finally {
      if (request === usageRequests) $('usage-table').removeAttribute('aria-busy');
    }
  }

  /** Rows of the usage table: one per UTC day and route, newest day first, routes in order. */
  function usageLines(rows) {
    const lines = new Map();
    for (const row of rows) {
      const key = `${row.day} ${row.route}`;
      if (!lines.has(key)) lines.set(key, { day: row.day, route: row.route, counts: new Map(), total: 0 });
      const line = lines.get(key);
      line.counts.set(row.outcome, (line.counts.get(row.outcome) || 0) + row.requests);
      line.total += row.requests;
    }
    const order = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
    return [...lines.values()].sort((a, b) => order(b.day, a.day) || order(a.route, b.route));
  }

  function showUsage(usage) {
    const lines = usageLines(usage.rows);
    // An outcome this page does not know yet still gets a column, so the columns add up.
    const outcomes = [...OUTCOMES];
    for (const row of usage.rows) if (!outcomes.includes(row.outcome)) outcomes.push(row.outcome);
    const number = (count) => el('td', { class: 'num' }, count ? String(count) : '');
    const period = `in the last ${usage.days} ${usage.days === 1 ? 'day' : 'days'}`;

    $('usage-summary').textContent = `${requestsWords(usage.total)} ${period} (UTC days, today included).`;
    $('usage-empty').textContent = `No requests ${period}.`;
    $('usage-empty').hidden = lines.length > 0;
    $('usage-details').hidden = lines.length === 0;
    drawBars($('usage-chart'), dailyCounts(usage.days, usage.rows));

    const table = $('usage-table');
    table.tHead.replaceChildren(
      el('tr', {}, el('th', {}, 'Day (UTC)'), el('th', {}, 'Route'), outcomes.map((o) => el('th', { class: 'num' }, o)), el('th', { class: 'num' }, 'Total')),
    );
    table.tBodies[0].replaceChildren(
      ...lines.map((line) =>
        el(
          'tr',
          { dataset: { day: line.day, route: line.route } },
          el('td', {}, line.day),
          el('td', {}, el('code', {}, line.route)),
          outcomes.map((o) => number(line.counts.get(o))),
          number(line.total),
        ),
      ),
    );
    const sums = outcomes.map((o) => usage.rows.filter((r) => r.outcome === o).reduce((sum, r) => sum + r.requests, 0));
    table.tFoot.replaceChildren(el('tr', {}, el('td', { colspan: 2 }, 'Total'), sums.map(number), number(usage.total)));
  }

  /** Empties the dialog: on close (sign-out closes it too), nothing of it stays in the page. */
  function clearUsage() {
    $('usage-summary').textContent = '';
    $('usage-empty').hidden = true;
    $('usage-details').hidden = true;
    $('usage-chart').replaceChildren();
    const table = $('usage-table');
    for (const part of [table.tHead, table.tBodies[0], table.tFoot]) part.replaceChildren();
  }

  function wireUsage() {
    $('usage-days').addEventListener('change', loadUsage);
    closeOnClick('usage-close', 'usage-dialog');
    $('usage-dialog').addEventListener('close', () => {
      usageToken = null;
      usageRequests += 1; // an answer still on its way is not shown
      showError('usage-error', null);
      clearUsage();
    });
  }

  // ---- API Tokens tab ----

  async function loadOwnTokens() {
    showError('tokens-error', null);
    const params = new URLSearchParams({ user: state.me.email, status: $('tokens-status').value, sort: '-created' });
    try {
      const tokens = await api('GET', `/api/v1/tokens?${params}`);
      fillTable('tokens-table', 'tokens-empty', tokens, { withOwner: false, actions: ['rotate', 'revoke'] });
    } catch (error) {
      showError('tokens-error', error);
    }
  }

  // ---- Token Manager tab ----

  /** The Token Manager's date ranges: the "from" and "to" fields, and the API's bounds for them. */
  const FILTER_RANGES = [
    { from: 'filter-created-from', to: 'filter-created-to', after: 'created_after', before: 'created_before' },
    { from: 'filter-used-from', to: 'filter-used-to', after: 'used_after', before: 'used_before' },
    { from: 'filter-expires-from', to: 'filter-expires-to', after: 'expires_after', before: 'expires_before' },
  ];

  /** A "to" day before its "from" day matches nothing: said at the "to" field. */
  function rangeRule(range) {
    return (to) => {
      const from = parseDay($(range.from).value).date;
      return from && to < from ? `${to} is before the “from” day ${from}: no token could match.` : '';
    };
  }

  /**
   * Checks every date filter, each showing its own error: true when all hold a day or nothing.
   * With `focus`, the first wrong field gets the focus.
   */
  function checkFilterDates({ focus = false } = {}) {
    let first = null;
    for (const range of FILTER_RANGES) {
      if (checkDateField($(range.from)) === null) first = first || $(range.from);
      if (checkDateField($(range.to), rangeRule(range)) === null) first = first || $(range.to);
    }
    if (first && focus) first.focus();
    return first === null;
  }

  /** The listing's query from the filters; null while a date filter holds no valid day. */
  function managerQuery() {
    if (!checkFilterDates()) return null;
    const params = new URLSearchParams();
    for (const email of $('filter-users').value.split(/[\s,;]+/).filter(Boolean)) params.append('user', email);
    const search = $('filter-search').value.trim();
    if (search) params.set('search', search);
    params.set('status', $('filter-status').value);
    // A "from" day starts at its 00:00:00Z; a "to" day includes its whole day: the bound is
    // the start of the next day (none after 9999-12-31: nothing is later). Empty: no bound.
    for (const range of FILTER_RANGES) {
      const from = $(range.from).value;
      const to = $(range.to).value;
      if (from) params.set(range.after, dayStart(from));
      const before = to ? dayStart(to, 1) : null;
      if (before) params.set(range.before, before);
    }
    const unused = $('filter-unused').value;
    if (unused) params.set('unused_for', unused);
    if ($('filter-never-used').checked) params.set('never_used', 'true');
    if ($('filter-no-expiry').checked) params.set('no_expiry', 'true');
    return params;
  }

  let managerRequests = 0;

  /**
   * Lists the tokens the filters select. While a date filter is wrong nothing is asked and
   * the table stays as it was: the wrong field says why.
   */
  async function loadManagerTokens() {
    const query = managerQuery();
    if (query === null) return;
    showError('manager-error', null);
    // Filters applied in quick succession: only the latest answer is shown.
    const request = ++managerRequests;
    try {
      const tokens = await api('GET', `/api/v1/tokens?${query}`);
      if (request !== managerRequests) return;
      fillTable('manager-table', 'manager-empty', tokens, { withOwner: true, actions: ['revoke'] });
      $('manager-count').textContent = tokens.length === 1 ? '1 token' : `${tokens.length} tokens`;
    } catch (error) {
      if (request !== managerRequests) return;
      $('manager-table').querySelector('tbody').replaceChildren();
      $('manager-count').textContent = '';
      showError('manager-error', error);
    }
  }

  function wireFilterDates() {
    for (const range of FILTER_RANGES) {
      wireDateField($(range.from));
      wireDateField($(range.to), rangeRule(range));
    }
  }

  // ---- Accounts tab ----

  const ACCOUNT_FLAGS = [
    ['enabled', 'Enabled'],
    ['can_create_tokens', 'Token permission'],
    ['token_manager', 'Token manager'],
    ['superuser', 'Superuser'],
  ];

  function accountRow(account) {
    const toggles = ACCOUNT_FLAGS.map(([field, label]) => {
      const box = el('input', { type: 'checkbox', 'aria-label': `${label}: ${account.email}`, dataset: { field } });
      box.checked = account[field];
      box.addEventListener('change', () => changeAccount(account, field, box));
      return el('td', {}, box);
    });
    const revokeAll = el(
      'button',
      { type: 'button', class: 'small danger-outline', dataset: { action: 'revoke-all' }, onclick: () => openRevokeAll(account.email) },
      'Revoke all tokens',
    );
    return el(
      'tr',
      { dataset: { email: account.email } },
      el('td', {}, account.email),
      el('td', {}, account.name || ''),
      el('td', {}, String(account.tokens ?? '')),
      toggles,
      el('td', { class: 'actions' }, revokeAll),
    );
  }

  async function loadAccounts() {
    showError('accounts-error', null);
    try {
      const accounts = await api('GET', '/api/v1/users');
      $('accounts-table').querySelector('tbody').replaceChildren(...accounts.map(accountRow));
    } catch (error) {
      showError('accounts-error', error);
    }
  }

  /**
   * Asks before a change that stops another account's tokens (disabling it, or taking away its
   * token permission), in a dialog like the page's other confirmations: true when confirmed.
   * Cancel, Escape, or a sign-out closing the dialog, all answer false.
   */
  function confirmBlocking(account, field) {
    const dialog = $('account-dialog');
    const tokens = typeof account.tokens === 'number' ? account.tokens : null;
    let refused = 'Its live tokens are refused from the very next request';
    if (tokens === 0) refused = 'It has no live token now; none of its tokens would work';
    else if (tokens === 1) refused = 'Its 1 live token is refused from the very next request';
    else if (tokens !== null) refused = `All ${tokens} of its live tokens are refused from the very next request`;
    if (field === 'enabled') {
      $('account-dialog-title').textContent = `Disable ${account.email}?`;
      $('account-dialog-text').textContent = `${refused}, and the account can no longer sign in. Enabling it again restores them.`;
      $('account-dialog-confirm').textContent = 'Disable account';
    } else {
      $('account-dialog-title').textContent = `Take away the token permission of ${account.email}?`;
      $('account-dialog-text').textContent = `${refused} (blocked, not revoked), and it cannot create new ones. Giving the permission back restores them.`;
      $('account-dialog-confirm').textContent = 'Take away token permission';
    }
    dialog.returnValue = '';
    return new Promise((resolve) => {
      dialog.addEventListener('close', () => resolve(dialog.returnValue === 'confirm'), { once: true });
      dialog.showModal();
      $('account-dialog-cancel').focus();
    });
  }

  async function changeAccount(account, field, box) {
    const email = account.email;
    showError('accounts-error', null);
    showBanner(null);
    const label = ACCOUNT_FLAGS.find(([name]) => name === field)[1];
    const own = email.toLowerCase() === state.me.email.toLowerCase();
    if (own && !window.confirm(`Change your own account: ${label.toLowerCase()} ${box.checked ? 'on' : 'off'}? You may lose access to this page.`)) {
      box.checked = !box.checked;
      return;
    }
    const blocks = (field === 'enabled' || field === 'can_create_tokens') && !box.checked;
    if (!own && blocks) {
      box.disabled = true;
      const confirmed = await confirmBlocking(account, field);
      box.disabled = false;
      if (!confirmed) {
        box.checked = true; // as it was
        return;
      }
    }
    box.disabled = true;
    try {
      const changed = await api('PATCH', `/api/v1/users/${encodeURIComponent(email)}`, { [field]: box.checked });
      const done = `${email}: ${label.toLowerCase()} ${box.checked ? 'on' : 'off'}.${fleetWords(changed, 'Applied')}`;
      if (own) {
        await refreshMe();
        // A superuser who gave up the role leaves this tab.
        if (!allowedTabs().includes(state.tab)) {
          await selectTab('tokens');
          showBanner(done);
          return;
        }
      }
      await loadAccounts();
      showBanner(done);
    } catch (error) {
      if (!state.me) return; // the change signed this tab out; the sign-in form says why
      box.checked = !box.checked;
      showError('accounts-error', error);
    } finally {
      box.disabled = false;
    }
  }

  async function addAccount(event) {
    event.preventDefault();
    showError('accounts-error', null);
    showBanner(null);
    const email = $('account-email').value.trim();
    if (!email) {
      showError('accounts-error', 'Give the new account an email address.');
      return;
    }
    const body = {
      email,
      can_create_tokens: $('account-permission').checked,
      token_manager: $('account-manager').checked,
      superuser: $('account-superuser').checked,
    };
    const name = $('account-name').value.trim();
    if (name) body.name = name;
    await busy($('account-add'), async () => {
      try {
        await api('POST', '/api/v1/users', body);
        $('account-form').reset();
        await loadAccounts();
        showBanner(`Account ${email} added.`);
      } catch (error) {
        showError('accounts-error', error);
      }
    });
  }

  // ---- tabs ----

  const TABS = {
    tokens: { tab: 'tab-tokens', panel: 'panel-tokens', load: loadOwnTokens },
    manager: { tab: 'tab-manager', panel: 'panel-manager', load: loadManagerTokens },
    accounts: { tab: 'tab-accounts', panel: 'panel-accounts', load: loadAccounts },
  };

  function allowedTabs() {
    const me = state.me;
    return Object.keys(TABS).filter(
      (name) => name === 'tokens' || (name === 'manager' && (me.superuser || me.token_manager)) || (name === 'accounts' && me.superuser),
    );
  }

  function selectTab(name, { keepBanner = false } = {}) {
    const allowed = allowedTabs();
    if (!allowed.includes(name)) name = 'tokens';
    state.tab = name;
    if (!keepBanner) showBanner(null);
    for (const [key, tab] of Object.entries(TABS)) {
      const selected = key === name;
      $(tab.tab).hidden = !allowed.includes(key);
      $(tab.tab).setAttribute('aria-selected', String(selected));
      $(tab.tab).tabIndex = selected ? 0 : -1;
      $(tab.panel).hidden = !selected;
    }
    return TABS[name].load();
  }

  function refreshCurrentTab() {
    return TABS[state.tab].load();
  }

  // ---- create dialog ----

  const LIFETIME_CHOICES = [7, 30, 60, 90, 180, 365].map((days) => days * 86400);

  function fillExpiryChoices() {
    const policy = state.policy;
    const select = $('create-expiry');
    const lifetimes = LIFETIME_CHOICES.filter((s) => s <= policy.max_lifetime_seconds);
    for (const s of [policy.default_lifetime_seconds, policy.max_lifetime_seconds]) {
      if (!lifetimes.includes(s)) lifetimes.push(s);
    }
    lifetimes.sort((a, b) => a - b);
    const options = lifetimes.map((seconds) => {
      const isDefault = seconds === policy.default_lifetime_seconds;
      const option = el('option', { value: `${seconds}s` }, `${lifetimeWords(seconds)}${isDefault ? ' (default)' : ''}`);
      option.selected = isDefault;
      return option;
    });
    options.push(el('option', { value: 'date' }, 'Choose a date…'));
    if (policy.allow_never_expires) options.push(el('option', { value: 'never' }, 'Never'));
    select.replaceChildren(...options);
    $('create-expiry-hint').textContent = `Tokens live at most ${lifetimeWords(policy.max_lifetime_seconds)}${
      policy.allow_never_expires ? ', or forever' : ''
    }.`;
    showExpiryRange();
    $('create-date-field').hidden = true;
  }

  /**
   * The UTC days a new token may be chosen to expire at the end of: tomorrow at the earliest,
   * and a day whose end is within the maximum lifetime at the latest. Read from the clock each
   * time, so a dialog left open over midnight (UTC) still checks the right days.
   */
  function expiryRange() {
    const day = 86400 * 1000;
    return {
      first: utcDate(Date.now() + day),
      last: utcDate(Date.now() + state.policy.max_lifetime_seconds * 1000 - day),
    };
  }

  function showExpiryRange() {
    const { first, last } = expiryRange();
    $('create-date-range').textContent =
      first <= last ? `A day from ${first} to ${last}; the token works until 23:59:59 UTC that day.` : '';
  }

  /** The expiry day's bound: a message with the days allowed, or '' when `date` is one of them. */
  function expiryRule(date) {
    const { first, last } = expiryRange();
    const lifetime = lifetimeWords(state.policy.max_lifetime_seconds);
    if (first > last) return `No day fits: tokens live at most ${lifetime}. Choose a lifetime from the list instead.`;
    if (date < first) return `${date} is too early: choose a day from ${first} to ${last} (UTC). The token must live past today.`;
    if (date > last) return `${date} is too late: choose a day from ${first} to ${last} (UTC). Tokens live at most ${lifetime}.`;
    return '';
  }

  function fillScopeChoices() {
    const policy = state.policy;
    const fieldset = $('create-scopes');
    // The operator's scopes, then the reserved admin ones (never ticked by default).
    const reserved = policy.reserved_scopes || [];
    const choices = [...policy.scopes.map((name) => ({ name, allows: '' })), ...reserved];
    const boxes = choices.map(({ name: scope, allows }) => {
      const id = `create-scope-${scope.replace(/[^A-Za-z0-9_-]/g, '_')}`;
      const box = el('input', { type: 'checkbox', id, name: 'scope', value: scope });
      box.checked = policy.default_scopes.includes(scope);
      const label = el('label', { for: id }, scope);
      if (allows) label.append(' ', el('span', { class: 'sub' }, `— ${allows}`));
      return el('div', { class: 'field checkbox' }, box, label);
    });
    fieldset.replaceChildren(el('legend', {}, 'Scopes'), ...boxes);
    fieldset.hidden = boxes.length === 0;
  }

  function openCreate(forOther) {
    state.createFor = forOther ? 'other' : 'self';
    $('create-form').reset();
    clearDateFields($('create-form'));
    showError('create-error', null);
    $('create-owner-field').hidden = !forOther;
    $('create-title').textContent = forOther ? 'Create an API token for an account' : 'Create an API token';
    fillExpiryChoices();
    fillScopeChoices();
    $('create-dialog').showModal();
    (forOther ? $('create-owner') : $('create-name')).focus();
  }

  /** A field that holds no valid value and shows its own error beside it. */
  class FieldError extends Error {
    constructor(input) {
      super(input.validationMessage);
      this.input = input;
    }
  }

  function createRequest() {
    const body = { name: $('create-name').value.trim() };
    if (!body.name) throw new Error('Give the token a name that says what it is for.');
    if (state.createFor === 'other') {
      const owner = $('create-owner').value.trim();
      if (!owner) throw new Error("Give the email of the account the token is for.");
      body.user = owner;
    }
    const expiry = $('create-expiry').value;
    if (expiry === 'never') body.never_expires = true;
    else if (expiry === 'date') {
      const input = $('create-date');
      const date = checkDateField(input, expiryRule);
      if (date === '') {
        const { first, last } = expiryRange();
        markDateField(input, first <= last ? `Type the expiry day as YYYY-MM-DD (UTC): a day from ${first} to ${last}.` : expiryRule(first));
      }
      if (!date) throw new FieldError(input);
      body.expires_at = dayEnd(date);
    } else body.expires_in = expiry;
    const scopes = [...$('create-scopes').querySelectorAll('input[name=scope]:checked')].map((box) => box.value);
    if (state.policy.scopes.length > 0 && scopes.length === 0) throw new Error('Choose at least one scope.');
    if (scopes.length > 0) body.scopes = scopes;
    const rate = $('create-rate').value.trim();
    if (rate) body.rate_limit = rate;
    return body;
  }

  async function submitCreate(event) {
    event.preventDefault();
    showError('create-error', null);
    let body;
    try {
      body = createRequest();
    } catch (error) {
      // A wrong field says why next to it; nothing is sent.
      if (error instanceof FieldError) error.input.focus();
      else showError('create-error', error);
      return;
    }
    await busy($('create-submit'), async () => {
      try {
        const created = await api('POST', '/api/v1/tokens', body);
        $('create-dialog').close();
        showSecret(created, `Token “${created.name}” for ${created.user}${created.expires_at ? `, expires ${formatTime(created.expires_at)}` : ', never expires'}.`);
        await refreshCurrentTab();
      } catch (error) {
        dialogError('create-dialog', 'create-error', error);
      }
    });
  }

  // ---- the secret, shown once ----

  function showSecret(created, about) {
    $('secret-value').value = created.token;
    $('secret-about').textContent = about;
    $('secret-copied').textContent = '';
    $('secret-dialog').showModal();
    selectSecret();
  }

  /**
   * Selects the whole secret, ready to copy, with the box showing its beginning (tg_…): a
   * plain select() leaves the caret, and the view, at the token's end.
   */
  function selectSecret() {
    const input = $('secret-value');
    input.focus();
    input.setSelectionRange(0, input.value.length, 'backward');
    input.scrollLeft = 0;
  }

  async function copySecret() {
    const input = $('secret-value');
    let copied = true;
    try {
      await navigator.clipboard.writeText(input.value);
    } catch (_) {
      // Outside a secure context (plain HTTP to another host) there is no clipboard API:
      // copy the selection instead.
      selectSecret();
      copied = document.execCommand('copy');
    }
    $('secret-copied').textContent = copied
      ? 'Copied to the clipboard.'
      : 'This browser would not copy it: select the token and copy it yourself.';
  }

  /** The secret leaves the page when the dialog closes, whichever way it closes. */
  function forgetSecret() {
    $('secret-value').value = '';
    $('secret-about').textContent = '';
  }

  // ---- revoke ----

  function detail(term, value) {
    return [el('dt', {}, term), el('dd', {}, value)];
  }

  function openRevoke(token) {
    state.pendingRevoke = token;
    showError('revoke-error', null);
    const lastUse = token.last_used_at
      ? `${formatTime(token.last_used_at)} — ${[token.last_used_method, token.last_used_path, token.last_used_ip].filter(Boolean).join(' ')}`
      : 'never used';
    $('revoke-details').replaceChildren(
      ...detail('Name', token.name),
      ...detail('Owner', token.user),
      ...detail('Prefix', `${token.prefix}…`),
      ...detail('Created', `${formatTime(token.created_at)} by ${token.created_by}`),
      ...detail('Last used', lastUse),
      ...detail('Expires', token.expires_at ? formatTime(token.expires_at) : 'never'),
      ...detail('Scopes', token.scopes.length ? token.scopes.join(' ') : 'none'),
    );
    $('revoke-self').hidden = !isThisSession(token);
    $('revoke-dialog').showModal();
    $('revoke-cancel').focus();
  }

  /**
   * What the running gateways confirmed of a change: " Refused by 3 of 3 gateways (12 ms)."
   * A gateway that has not applied it yet is named; it applies the change when it catches up.
   */
  function fleetWords(result, verb) {
    if (typeof result.gateways_running !== 'number') return '';
    if (result.gateways_running === 0) return ' No gateway is running.';
    const noun = result.gateways_running === 1 ? 'gateway' : 'gateways';
    let words = ` ${verb} by ${result.gateways_confirmed} of ${result.gateways_running} ${noun} (${result.confirm_ms} ms).`;
    const pending = result.gateways_pending || [];
    if (pending.length > 0) {
      words += ` Not yet applied by ${pending.map((g) => `${g.host} pid ${g.pid}`).join(', ')}; they will apply it when they catch up.`;
    }
    return words;
  }

  async function confirmRevoke() {
    const token = state.pendingRevoke;
    if (!token) return;
    await busy($('revoke-confirm'), async () => {
      try {
        const signedInWithIt = isThisSession(token);
        const revoked = await api('DELETE', `/api/v1/tokens/${token.id}`);
        $('revoke-dialog').close();
        if (signedInWithIt) {
          signOut(`Token “${token.name}” was revoked. It was the token this tab signed in with, so you are signed out.`);
          return;
        }
        await refreshCurrentTab();
        showBanner(`Token “${token.name}” (${token.prefix}…) of ${token.user} was revoked.${fleetWords(revoked, 'Refused')}`);
      } catch (error) {
        dialogError('revoke-dialog', 'revoke-error', error);
      }
    });
  }

  // ---- rotate ----

  function openRotate(token) {
    state.pendingRotate = token;
    $('rotate-form').reset();
    showError('rotate-error', null);
    $('rotate-name').textContent = token.name;
    $('rotate-prefix').textContent = `${token.prefix}…`;
    $('rotate-dialog').showModal();
  }

  async function submitRotate(event) {
    event.preventDefault();
    const token = state.pendingRotate;
    if (!token) return;
    const mode = new FormData($('rotate-form')).get('mode');
    const body = {};
    if (mode === 'grace') body.grace = $('rotate-grace-period').value;
    if (mode === 'first_use') body.until_first_use = true;
    await busy($('rotate-confirm'), async () => {
      try {
        const signedInWithIt = isThisSession(token);
        const successor = await api('POST', `/api/v1/tokens/${token.id}/rotate`, body);
        $('rotate-dialog').close();
        // The tab moves to the successor, so rotating the token it signed in with keeps it signed in.
        if (signedInWithIt) {
          state.credential = { email: state.credential.email, token: successor.token };
          saveCredential(state.credential);
        }
        const ending = { now: 'The old token no longer works.', grace: `The old token keeps working for ${$('rotate-grace-period').selectedOptions[0].textContent}.`, first_use: 'The old token keeps working until this one is first used.' }[mode];
        showSecret(successor, `Successor of “${token.name}”. ${ending}${signedInWithIt ? ' This tab now uses the new token.' : ''}`);
        await refreshCurrentTab();
      } catch (error) {
        dialogError('rotate-dialog', 'rotate-error', error);
      }
    });
  }

  // ---- revoke all of an account's tokens ----

  function openRevokeAll(email) {
    state.pendingRevokeAll = email;
    showError('revoke-all-error', null);
    $('revoke-all-email').textContent = email;
    $('revoke-all-dialog').showModal();
    $('revoke-all-cancel').focus();
  }

  async function confirmRevokeAll() {
    const email = state.pendingRevokeAll;
    if (!email) return;
    await busy($('revoke-all-confirm'), async () => {
      try {
        const result = await api('POST', `/api/v1/users/${encodeURIComponent(email)}/tokens/revoke-all`);
        $('revoke-all-dialog').close();
        if (email.toLowerCase() === state.me.email.toLowerCase() && result.revoked > 0) {
          signOut(`All ${result.revoked} tokens of ${email} were revoked, including the one this tab signed in with.`);
          return;
        }
        await refreshCurrentTab();
        showBanner(`${result.revoked} token${result.revoked === 1 ? '' : 's'} of ${email} revoked.${fleetWords(result, 'Refused')}`);
      } catch (error) {
        dialogError('revoke-all-dialog', 'revoke-all-error', error);
      }
    });
  }

  // ---- apply the maximum lifetime to existing tokens (superusers) ----

  /** Asks for a dry run first, so the dialog says how many tokens (and which) would change. */
  async function openCap() {
    showError('manager-error', null);
    showBanner(null);
    await busy($('cap-expiry'), async () => {
      let plan;
      try {
        plan = await api('POST', '/api/v1/tokens/cap-expiry', { dry_run: true });
      } catch (error) {
        showError('manager-error', error);
        return;
      }
      state.pendingCap = plan;
      showError('cap-error', null);
      const count = plan.tokens.length;
      const noun = count === 1 ? 'token' : 'tokens';
      $('cap-summary').textContent =
        count === 0
          ? `No live token outlives the maximum lifetime (tokens.max_lifetime = ${plan.max_lifetime}): nothing would change.`
          : `${count} live ${noun} would get an earlier expiry: the maximum lifetime is ${plan.max_lifetime} (tokens.max_lifetime).`;
      $('cap-table').querySelector('tbody').replaceChildren(
        ...plan.tokens.map((t) =>
          el(
            'tr',
            { dataset: { tokenId: t.id } },
            el('td', {}, t.user),
            el('td', {}, t.name),
            el('td', {}, t.old_expires_at ? formatTime(t.old_expires_at) : 'never'),
            el('td', {}, formatTime(t.new_expires_at)),
          ),
        ),
      );
      $('cap-table').hidden = count === 0;
      $('cap-confirm').hidden = count === 0;
      $('cap-confirm').textContent = `Cap ${count} ${count === 1 ? 'expiry' : 'expiries'}`;
      $('cap-cancel').textContent = count === 0 ? 'Close' : 'Cancel';
      $('cap-dialog').showModal();
      $('cap-cancel').focus();
    });
  }

  async function confirmCap() {
    if (!state.pendingCap) return;
    await busy($('cap-confirm'), async () => {
      try {
        const result = await api('POST', '/api/v1/tokens/cap-expiry', { dry_run: false });
        $('cap-dialog').close();
        state.pendingCap = null;
        await refreshCurrentTab();
        const count = result.tokens.length;
        showBanner(
          count === 0
            ? 'No live token outlives the maximum lifetime: nothing changed.'
            : `The expiry of ${count} ${count === 1 ? 'token' : 'tokens'} now fits the maximum lifetime of ${result.max_lifetime}; the owners are notified.${fleetWords(result, 'Applied')}`,
        );
      } catch (error) {
        dialogError('cap-dialog', 'cap-error', error);
      }
    });
  }

  // ---- signing in and out ----

  function roleWords(me) {
    if (me.superuser) return '(superuser)';
    if (me.token_manager) return '(token manager)';
    return '';
  }

  function renderWhoami() {
    $('whoami-email').textContent = state.me.email;
    $('whoami-roles').textContent = roleWords(state.me);
    $('whoami').hidden = false;
    // Capping every token's expiry is a superuser's change (the API refuses anyone else).
    $('cap-expiry').hidden = !state.me.superuser;
  }

  async function refreshMe() {
    state.me = await api('GET', '/api/v1/me');
    renderWhoami();
    for (const [key, tab] of Object.entries(TABS)) $(tab.tab).hidden = !allowedTabs().includes(key);
  }

  const NEEDS_ADMIN =
    'Sign-in refused: this token lacks the admin scope. The page signs in only with a token that has admin (for example: tokengate token create --scope admin ...).';

  /** Checks a credential against the API; on success the page opens on the API Tokens tab. */
  async function enter(credential) {
    // One after the other: a wrong token then costs one failed authentication, not two.
    let me;
    try {
      me = await api('GET', '/api/v1/me', undefined, credential);
    } catch (error) {
      if (error.status === 403) throw new Error(NEEDS_ADMIN);
      throw error;
    }
    // The page changes things: it signs in only with a token that may (admin, or *).
    if (!me.token.scopes.some((scope) => scope === 'admin' || scope === '*')) throw new Error(NEEDS_ADMIN);
    const policy = await api('GET', '/api/v1/policy', undefined, credential);
    state.credential = credential;
    state.me = me;
    state.policy = policy;
    saveCredential(credential);
    renderWhoami();
    $('sign-in-view').hidden = true;
    $('app-view').hidden = false;
    await selectTab('tokens', { keepBanner: true });
  }

  function showSignIn(message) {
    $('app-view').hidden = true;
    $('whoami').hidden = true;
    $('sign-in-view').hidden = false;
    showError('sign-in-error', message || null);
    $('sign-in-email').focus();
  }

  function signOut(message) {
    forgetCredential();
    state.credential = null;
    state.me = null;
    state.policy = null;
    // A token that was just created stays on screen until its Done button: it exists now,
    // and this is the only time it can be copied.
    for (const dialog of document.querySelectorAll('dialog[open]')) {
      if (dialog.id !== 'secret-dialog') dialog.close();
    }
    for (const table of ['tokens-table', 'manager-table', 'accounts-table', 'cap-table']) $(table).querySelector('tbody').replaceChildren();
    state.pendingCap = null;
    for (const form of ['filter-form', 'account-form']) $(form).reset();
    clearDateFields($('filter-form'));
    $('manager-count').textContent = '';
    showBanner(null);
    showSignIn(message);
  }

  async function submitSignIn(event) {
    event.preventDefault();
    showError('sign-in-error', null);
    const email = $('sign-in-email').value.trim();
    const token = $('sign-in-token').value.trim();
    if (!email || !token) {
      showError('sign-in-error', 'Enter your email and an API token.');
      return;
    }
    await busy($('sign-in-submit'), async () => {
      try {
        await enter({ email, token });
        $('sign-in-token').value = '';
      } catch (error) {
        const message =
          error.status === 401
            ? 'Sign-in failed: this email and token do not match a valid token (it may be revoked, expired or blocked).'
            : error.message;
        showError('sign-in-error', message);
      }
    });
  }

  // ---- wiring ----

  function closeOnClick(buttonId, dialogId) {
    $(buttonId).addEventListener('click', () => $(dialogId).close());
  }

  function wire() {
    $('sign-in-form').addEventListener('submit', submitSignIn);
    $('sign-out').addEventListener('click', () => signOut('You signed out.'));
    for (const [name, tab] of Object.entries(TABS)) $(tab.tab).addEventListener('click', () => selectTab(name));
    $('tokens-status').addEventListener('change', loadOwnTokens);

    $('create-token').addEventListener('click', () => openCreate(false));
    $('manager-create').addEventListener('click', () => openCreate(true));
    $('create-form').addEventListener('submit', submitCreate);
    $('create-expiry').addEventListener('change', () => {
      const byDate = $('create-expiry').value === 'date';
      $('create-date-field').hidden = !byDate;
      if (byDate) showExpiryRange();
      else markDateField($('create-date'), '');
    });
    wireDateField($('create-date'), expiryRule);
    closeOnClick('create-cancel', 'create-dialog');

    $('secret-copy').addEventListener('click', copySecret);
    closeOnClick('secret-done', 'secret-dialog');
    $('secret-dialog').addEventListener('close', forgetSecret);
    // Escape would close the dialog and lose the token: only Done closes it.
    $('secret-dialog').addEventListener('cancel', (event) => event.preventDefault());

    $('revoke-confirm').addEventListener('click', confirmRevoke);
    closeOnClick('revoke-cancel', 'revoke-dialog');
    $('rotate-form').addEventListener('submit', submitRotate);
    closeOnClick('rotate-cancel', 'rotate-dialog');
    $('revoke-all-confirm').addEventListener('click', confirmRevokeAll);
    closeOnClick('revoke-all-cancel', 'revoke-all-dialog');
    $('cap-expiry').addEventListener('click', openCap);
    $('cap-confirm').addEventListener('click', confirmCap);
    closeOnClick('cap-cancel', 'cap-dialog');
    closeOnClick('account-dialog-cancel', 'account-dialog');
    $('account-dialog-confirm').addEventListener('click', () => $('account-dialog').close('confirm'));

    $('filter-form').addEventListener('submit', (event) => {
      event.preventDefault();
      if (checkFilterDates({ focus: true })) loadManagerTokens();
    });
    $('filter-reset').addEventListener('click', () => {
      $('filter-form').reset();
      clearDateFields($('filter-form'));
      loadManagerTokens();
    });
    wireFilterDates();
    $('account-form').addEventListener('submit', addAccount);
    wireUsage();
  }

  async function start() {
    wire();
    const credential = loadCredential();
    if (!credential) {
      showSignIn();
      return;
    }
    try {
      await enter(credential);
    } catch (error) {
      forgetCredential();
      showSignIn(error.status === 401 ? 'Your session ended: sign in again.' : error.message);
    }
  }

  start();
})();
