// stampede report: draws the run's data section (the JSON in #stampede-data) as SVG.
// Self-contained on purpose: the page must open offline, years later, from a CI artifact.
(function () {
  'use strict';

  var SVGNS = 'http://www.w3.org/2000/svg';
  var PALETTE = ['#1f6feb', '#d1242f', '#1a7f37', '#bf8700', '#8250df', '#0a7ea4', '#bc4c00', '#6e7781', '#cf2f90', '#57606a'];
  var W = 520, H = 170, M = { l: 52, r: 10, t: 8, b: 22 };

  var data = JSON.parse(document.getElementById('stampede-data').textContent);
  var root = document.getElementById('report');
  var tip = document.getElementById('tip');

  // el builds an HTML element; text is always set as text, never parsed as markup.
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function sv(tag, attrs, parent) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function add(parent) {
    for (var i = 1; i < arguments.length; i++) if (arguments[i]) parent.appendChild(arguments[i]);
    return parent;
  }
  function isNum(v) { return typeof v === 'number' && isFinite(v); }

  // Number formatting by unit.
  function trim(v, digits) {
    var s = v.toFixed(digits);
    return s.indexOf('.') >= 0 ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
  }
  function short(v) {
    var a = Math.abs(v);
    if (a >= 1e9) return trim(v / 1e9, 1) + 'G';
    if (a >= 1e6) return trim(v / 1e6, 1) + 'M';
    if (a >= 1e4) return trim(v / 1e3, 1) + 'k';
    if (a >= 100) return trim(v, 0);
    if (a >= 10) return trim(v, 1);
    if (a >= 1) return trim(v, 2);
    if (a === 0) return '0';
    return String(Number(v.toPrecision(2)));
  }
  function fmt(v, unit) {
    if (!isNum(v)) return 'no value';
    switch (unit) {
      case 'ms': return Math.abs(v) >= 1000 ? trim(v / 1000, 2) + ' s' : short(v) + ' ms';
      case 'ratio': return short(v * 100) + '%';
      case 'per_s': return short(v) + '/s';
      default: return short(v);
    }
  }
  function fmtT(t) {
    if (t >= 120) return trim(t / 60, 1) + 'm';
    return trim(t, 0) + 's';
  }

  // niceStep rounds a tick step up to 1, 2 or 5 times a power of ten.
  function niceStep(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) if (v <= steps[i] * p * (1 + 1e-9)) return steps[i] * p;
    return 10 * p;
  }

  // scale is an axis from 0 to a top that is a whole number of nice steps.
  function scale(max, ticks) {
    var step = niceStep(max / ticks);
    var top = Math.max(step, Math.ceil(max / step - 1e-9) * step);
    return { top: top, step: step };
  }

  function verdictBadge(v) {
    var labels = { pass: 'pass', fail: 'fail', invalid: 'invalid: generator bound', incomplete: 'incomplete' };
    return el('span', 'badge ' + v, labels[v] || v);
  }

  function header() {
    var h = el('header');
    var h1 = add(el('h1', null, 'stampede report '), verdictBadge(data.verdict));
    add(h, h1);
    var sub = el('p', 'sub');
    var parts = [['run', data.run], ['scenario', data.scenario], ['started', data.started]];
    parts.forEach(function (p, i) {
      if (!p[1]) return;
      if (i > 0) sub.appendChild(document.createTextNode('  ·  '));
      sub.appendChild(document.createTextNode(p[0] + ' '));
      add(sub, el('code', null, p[1]));
    });
    sub.appendChild(document.createTextNode('  ·  ' + data.tunings.length + ' tuning' + (data.tunings.length === 1 ? '' : 's')));
    add(h, sub);
    if (!data.server_data) {
      add(h, el('p', 'sub', 'Viewers only (a stampede viewers run): the servers were not measured, so their charts are absent.'));
    }
    if (data.problems && data.problems.length) {
      var pr = el('div', 'problems');
      add(pr, el('b', null, 'Files that could not be read (their charts are missing):'));
      var ul = el('ul');
      data.problems.forEach(function (p) { add(ul, el('li', null, p)); });
      add(root, add(h, add(pr, ul)));
    } else {
      add(root, h);
    }
  }

  // columns puts the tunings side by side; one tuning alone keeps a readable width.
  function columns(n) {
    return n <= 1 ? 'minmax(0, 820px)' : 'repeat(' + n + ', minmax(0, 1fr))';
  }

  function tuningCards() {
    add(root, el('h2', null, 'Verdict and gates'));
    var grid = el('div', 'grid');
    grid.style.gridTemplateColumns = columns(data.tunings.length);
    data.tunings.forEach(function (t) {
      var card = el('section', 'card');
      card.dataset.tuning = t.name;
      add(card, add(el('h3', null, t.name + ' '), verdictBadge(t.verdict)));
      var dl = el('dl', 'figures');
      (t.figures || []).forEach(function (f) {
        add(dl, el('dt', null, f.label), el('dd', f.bad ? 'bad' : null, f.text));
      });
      add(card, dl);
      if (t.gates && t.gates.length) {
        var tbl = el('table', 'gates');
        add(tbl, add(el('tr'), el('th', null, 'gate'), el('th', null, 'value'), el('th', null, '')));
        t.gates.forEach(function (g) {
          add(tbl, add(el('tr'), el('td', null, g.threshold), el('td', null, short(g.value)),
            el('td', g.pass ? 'ok' : 'no', g.pass ? 'pass' : 'FAIL')));
        });
        add(card, tbl);
      } else {
        add(card, el('p', 'sub', 'no gates'));
      }
      if (t.notes && t.notes.length) {
        var ul = el('ul', 'notes');
        t.notes.forEach(function (n) { add(ul, el('li', null, n)); });
        add(card, ul);
      }
      add(grid, card);
    });
    add(root, grid);
  }

  // colorsFor gives each line name of a row one colour across the row's charts, so
  // "mirror-2" or "timeout" is the same colour in every tuning.
  function colorsFor(row) {
    var m = {}, n = 0;
    row.charts.forEach(function (c) {
      if (!c) return;
      c.lines.forEach(function (l) { if (!(l.name in m)) m[l.name] = PALETTE[n++ % PALETTE.length]; });
    });
    return m;
  }

  function rowExtent(row) {
    var xmax = 0, ymax = 0;
    row.charts.forEach(function (c) {
      if (!c) return;
      c.lines.forEach(function (l) {
        for (var i = 0; i < l.t.length; i++) {
          if (isNum(l.t[i]) && l.t[i] > xmax) xmax = l.t[i];
          if (isNum(l.v[i]) && l.v[i] > ymax) ymax = l.v[i];
        }
      });
    });
    var y = row.y_max > 0 ? { top: row.y_max, step: row.y_max / 4 } : scale(ymax, 4);
    return { x: xmax > 0 ? xmax : 1, y: y.top, ystep: y.step };
  }

  // nearest finds the index of the point of l closest to t (l.t ascends).
  function nearest(l, t) {
    var lo = 0, hi = l.t.length - 1;
    if (hi < 0) return -1;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (l.t[mid] < t) lo = mid + 1; else hi = mid;
    }
    if (lo > 0 && Math.abs(l.t[lo - 1] - t) <= Math.abs(l.t[lo] - t)) lo--;
    return lo;
  }

  function lineChart(row, chart, tuning, ext, colors) {
    var fig = el('figure', 'chart');
    fig.dataset.chart = row.id + '/' + tuning;
    var cap = add(el('figcaption'), el('b', null, tuning));
    if (chart.note) cap.appendChild(document.createTextNode(' — ' + chart.note));
    cap.title = cap.textContent;
    add(fig, cap);
    var s = sv('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': row.title + ', ' + tuning });
    var pw = W - M.l - M.r, ph = H - M.t - M.b;
    function X(t) { return M.l + (t / ext.x) * pw; }
    function Y(v) { return M.t + ph - (Math.min(v, ext.y) / ext.y) * ph; }
    for (var i = 0; i * ext.ystep <= ext.y * (1 + 1e-9); i++) {
      var v = i * ext.ystep, y = Y(v);
      sv('line', { x1: M.l, x2: W - M.r, y1: y, y2: y, 'class': i === 0 ? 'axis' : 'gridline' }, s);
      sv('text', { x: M.l - 4, y: y + 3, 'text-anchor': 'end' }, s).textContent = fmt(v, row.unit);
    }
    var xstep = niceStep(ext.x / 6);
    for (var t = 0; t <= ext.x + 1e-9; t += xstep) {
      sv('text', { x: X(t), y: H - 6, 'text-anchor': 'middle' }, s).textContent = fmtT(t);
    }
    (chart.holes || []).forEach(function (h) {
      var x0 = X(Math.max(0, h.from)), x1 = X(Math.min(ext.x, h.to));
      var r = sv('rect', { x: x0, y: M.t, width: Math.max(2, x1 - x0), height: ph, 'class': 'hole' }, s);
      sv('title', {}, r).textContent = fmtT(h.from) + '–' + fmtT(h.to) + ': ' + h.label;
    });
    (chart.marks || []).forEach(function (mk) {
      if (!(mk.t >= 0 && mk.t <= ext.x)) return;
      var ln = sv('line', { x1: X(mk.t), x2: X(mk.t), y1: M.t, y2: M.t + ph, 'class': 'mark-' + mk.kind }, s);
      sv('title', {}, ln).textContent = fmtT(mk.t) + ': ' + mk.label;
    });
    var points = 0;
    chart.lines.forEach(function (l) {
      var d = '', run = 0, lonely = [];
      for (var i = 0; i < l.t.length; i++) {
        if (!isNum(l.v[i]) || !isNum(l.t[i])) { // a gap: end the segment, never bridge it
          if (run === 1) lonely.push(i - 1);
          run = 0;
          continue;
        }
        d += (run === 0 ? 'M' : 'L') + X(l.t[i]).toFixed(1) + ',' + Y(l.v[i]).toFixed(1);
        run++;
        points++;
      }
      if (run === 1) lonely.push(l.t.length - 1);
      var c = colors[l.name];
      if (d) sv('path', { d: d, 'class': 'series', stroke: c, 'data-name': l.name }, s);
      lonely.forEach(function (i) { sv('circle', { cx: X(l.t[i]), cy: Y(l.v[i]), r: 2, fill: c }, s); });
    });
    fig.dataset.points = String(points);
    add(fig, s);
    hover(s, row, chart, ext, X, pw);
    var legend = el('div', 'legend');
    chart.lines.forEach(function (l) {
      var sp = el('span', null, l.name);
      sp.style.setProperty('--c', colors[l.name]);
      add(legend, sp);
    });
    var kinds = {};
    (chart.marks || []).forEach(function (mk) { kinds[mk.kind] = true; });
    if (kinds.crash) { var c1 = el('span', 'mk', 'crash'); c1.style.setProperty('--c', '#cf222e'); add(legend, c1); }
    if (kinds.fault) { var c2 = el('span', 'mk', 'fault'); c2.style.setProperty('--c', '#9a6700'); add(legend, c2); }
    (chart.holes || []).slice(0, 1).forEach(function (h) { add(legend, el('span', 'hole', h.label)); });
    add(fig, legend);
    return fig;
  }

  // hover shows every line's value at the pointer's time.
  function hover(s, row, chart, ext, X, pw) {
    var cursor = sv('line', { y1: M.t, y2: H - M.b, 'class': 'cursor', visibility: 'hidden' }, s);
    var pad = sv('rect', { x: M.l, y: M.t, width: pw, height: H - M.t - M.b, fill: 'transparent' }, s);
    pad.addEventListener('mousemove', function (ev) {
      var box = s.getBoundingClientRect();
      var t = ((ev.clientX - box.left) * (W / box.width) - M.l) / pw * ext.x;
      tip.textContent = '';
      add(tip, el('b', null, fmtT(Math.max(0, t))));
      var at = t;
      chart.lines.forEach(function (l) {
        var i = nearest(l, t);
        if (i < 0) return;
        at = l.t[i];
        add(tip, el('div', null, l.name + ': ' + fmt(l.v[i], row.unit)));
      });
      (chart.marks || []).forEach(function (mk) {
        if (Math.abs(mk.t - t) <= ext.x / 40) add(tip, el('div', null, fmtT(mk.t) + ' ' + mk.label));
      });
      cursor.setAttribute('x1', X(at)); cursor.setAttribute('x2', X(at));
      cursor.setAttribute('visibility', 'visible');
      tip.hidden = false;
      tip.style.left = (ev.clientX + 14) + 'px';
      tip.style.top = (ev.clientY + 10) + 'px';
    });
    pad.addEventListener('mouseleave', function () {
      cursor.setAttribute('visibility', 'hidden');
      tip.hidden = true;
    });
  }

  function rows() {
    add(root, el('h2', null, 'Over time (one column per tuning, one scale per row)'));
    data.rows.forEach(function (row) {
      var sec = el('section', 'row');
      sec.id = 'row-' + row.id;
      sec.dataset.row = row.id;
      add(sec, el('h3', null, row.title));
      var grid = el('div', 'grid');
      grid.style.gridTemplateColumns = columns(data.tunings.length);
      var ext = rowExtent(row), colors = colorsFor(row);
      row.charts.forEach(function (c, i) {
        var name = data.tunings[i] ? data.tunings[i].name : '#' + i;
        if (!c) {
          add(grid, el('div', 'nodata', name + ': no data'));
          return;
        }
        add(grid, lineChart(row, c, name, ext, colors));
      });
      add(root, add(sec, grid));
    });
  }

  // barChart draws a bar per tuning as HTML boxes: they stay crisp at any width.
  function barChart(bc) {
    var fig = el('figure', 'bars');
    fig.dataset.chart = 'compare/' + bc.id;
    add(fig, add(el('figcaption'), el('b', null, bc.title),
      document.createTextNode(' — ' + (bc.better === 'higher' ? 'higher is better' : 'lower is better'))));
    var most = 0;
    bc.bars.forEach(function (b) { if (isNum(b.value) && b.value > most) most = b.value; });
    var top = bc.unit === 'ratio' && most <= 1 ? 1 : scale(most, 4).top;
    var points = 0;
    bc.bars.forEach(function (b, i) {
      var line = el('div', 'barline');
      var name = el('span', 'barname', b.tuning);
      name.title = b.tuning;
      var track = el('span', 'bartrack');
      if (isNum(b.value)) {
        points++;
        var bar = el('span', 'bar');
        bar.style.width = Math.max(0.5, Math.min(100, b.value / top * 100)) + '%';
        bar.style.background = PALETTE[i % PALETTE.length];
        bar.title = b.tuning + ': ' + fmt(b.value, bc.unit);
        add(track, bar, el('span', 'barvalue', fmt(b.value, bc.unit)));
      } else {
        add(track, el('span', 'barvalue', 'n/a'));
      }
      add(fig, add(line, name, track));
    });
    fig.dataset.points = String(points);
    return fig;
  }

  function comparison() {
    add(root, el('h2', null, 'Comparison (a bar per tuning)'));
    var grid = el('div', 'grid');
    grid.style.gridTemplateColumns = 'repeat(auto-fill, minmax(340px, 1fr))';
    data.compare.forEach(function (bc) { add(grid, barChart(bc)); });
    add(root, grid);
  }

  function footer() {
    add(root, el('footer', null, 'Written by stampede from summary.json and the series files beside it; ' +
      'regenerate with: stampede report DIR. Red lines mark crashes, dashed lines faults; breaks in a line are steps without a value (a server down, no answer).'));
  }

  header();
  tuningCards();
  comparison();
  rows();
  footer();
  document.body.dataset.rendered = 'true';
})();
