"""The triage page's inline style and script (no network: everything the page needs is in the file).

The script filters and sorts the table; its state lives in the URL's fragment
(``#verdict=anomalous&type=scratch&product=washer&q=text&sort=-score``), so a filtered view can be
bookmarked or sent, and the count chips and histogram titles are plain links that set it.
"""

STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;padding:20px 24px;background:#f4f5f8;
color:#1d2330;font-size:13px}
h1{font-size:20px;margin:0 0 2px}h2{font-size:16px;margin:22px 0 8px}h3{font-size:13px;margin:0 0 4px}
a{color:#1f5fbf;text-decoration:none}a:hover{text-decoration:underline}
.meta{color:#5b6475;margin-bottom:10px;overflow-wrap:anywhere}.muted{color:#6b7383}
.chips{display:flex;flex-wrap:wrap;gap:6px;margin:6px 0}
.chip{display:inline-flex;gap:6px;align-items:center;padding:3px 10px;border-radius:12px;background:#fff;
border:1px solid #d9dde5;color:#1d2330}.chip b{font-size:14px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;color:#fff;font-size:12px}
.anomalous{background:#d0362c}.normal{background:#2e9e5b}.uncertain{background:#e0a020;color:#1d2330}
.error{background:#6b7383}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:10px}
.card{background:#fff;border:1px solid #d9dde5;border-radius:6px;padding:8px;display:flex;flex-direction:column;gap:3px}
.card.uncertain{border-left:5px solid #e0a020}.card.anomalous{border-left:5px solid #d0362c}
.card .path{font-size:12px;font-weight:600;overflow-wrap:anywhere}.card .line{white-space:nowrap}
.card .why{color:#39414f;font-size:12px;display:-webkit-box;-webkit-line-clamp:4;-webkit-box-orient:vertical;overflow:hidden}
.thumb{display:block;max-width:100%;height:auto;border-radius:4px;background:#222}.card .thumb,.card .ph{align-self:center}td .thumb{width:96px}
.ph{display:flex;align-items:center;justify-content:center;text-align:center;background:#e3e6ec;color:#5b6475;
border:1px dashed #9aa2b1;border-radius:4px;font-size:11px;padding:4px}
.overview{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
.panel{background:#fff;border:1px solid #d9dde5;border-radius:6px;padding:10px}.panel .sub{color:#6b7383;font-size:12px;margin-bottom:4px}
.hist .ax{font-size:10px;fill:#5b6475}
table{border-collapse:collapse;background:#fff;width:100%}
th,td{padding:6px 8px;border-bottom:1px solid #e3e6ec;vertical-align:top;text-align:left}
th{background:#e9ecf2;position:sticky;top:0;z-index:1;white-space:nowrap}
th[data-sort]{cursor:pointer;user-select:none}th[data-sort]:after{content:" \\2195";color:#9aa2b1}
th[aria-sort=ascending]:after{content:" \\25B2";color:#1d2330}th[aria-sort=descending]:after{content:" \\25BC";color:#1d2330}
td.path{font-family:ui-monospace,monospace;font-size:12px;overflow-wrap:anywhere;max-width:320px}
td.num{text-align:right;font-variant-numeric:tabular-nums}td.note{max-width:480px;color:#39414f}
td.note div{max-height:5.6em;overflow:auto}
.guessed{border-bottom:1px dotted #6b7383;cursor:help}
.caution{background:#fff7e0;border:1px solid #e0a020;border-radius:6px;padding:2px 14px;margin:10px 0}
.caution h2{font-size:14px;margin:8px 0 2px}.caution li{margin:4px 0}
.counts td{padding:2px 8px;border:0}.counts td.num{font-weight:600}
.filters{display:flex;flex-wrap:wrap;gap:10px;align-items:center;margin:0 0 8px}
.filters select,.filters input{font:inherit;padding:3px 6px}
ul.errors{margin:0;padding-left:18px}ul.errors li{margin:2px 0;overflow-wrap:anywhere}
.legend{color:#5b6475;font-size:12px;margin-top:4px}
"""

SCRIPT = """
(function(){
  var body = document.getElementById('rows').tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  rows.forEach(function(tr, i){ tr.triageIndex = i; });
  var keys = ['verdict', 'type', 'product'];
  var controls = {};
  keys.forEach(function(k){ controls[k] = document.getElementById('f-' + k); });
  var query = document.getElementById('f-q');
  var shown = document.getElementById('shown');
  var sortKey = '', sortDir = 1;
  function cell(tr, key){ return tr.querySelector('td[data-k="' + key + '"]'); }
  function filter(){
    var n = 0, text = query.value.trim().toLowerCase();
    rows.forEach(function(tr){
      var ok = keys.every(function(k){
        var want = controls[k].value;
        return !want || cell(tr, k).getAttribute('data-v') === want;
      });
      if (ok && text) ok = cell(tr, 'path').getAttribute('data-v').toLowerCase().indexOf(text) >= 0;
      tr.hidden = !ok;
      if (ok) n++;
    });
    shown.textContent = n + ' of ' + rows.length + ' images shown';
  }
  function sortBy(key, dir){
    var th = document.querySelector('th[data-sort="' + key + '"]');
    sortKey = th ? key : '';
    sortDir = dir;
    var numeric = th && th.getAttribute('data-num') === '1';
    var sorted = rows.slice().sort(function(a, b){
      if (!sortKey) return a.triageIndex - b.triageIndex;
      var x = cell(a, sortKey).getAttribute('data-s'), y = cell(b, sortKey).getAttribute('data-s');
      var c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
      return c * sortDir || a.triageIndex - b.triageIndex;
    });
    sorted.forEach(function(tr){ body.appendChild(tr); });
    document.querySelectorAll('th[data-sort]').forEach(function(h){
      if (h.getAttribute('data-sort') === sortKey) h.setAttribute('aria-sort', dir > 0 ? 'ascending' : 'descending');
      else h.removeAttribute('aria-sort');
    });
  }
  function save(){
    var p = new URLSearchParams();
    keys.forEach(function(k){ if (controls[k].value) p.set(k, controls[k].value); });
    if (query.value.trim()) p.set('q', query.value.trim());
    if (sortKey) p.set('sort', (sortDir < 0 ? '-' : '') + sortKey);
    history.replaceState(null, '', '#' + p.toString());
  }
  function load(){
    var hash = location.hash.slice(1);
    if (hash.indexOf('=') < 0) return;
    var p = new URLSearchParams(hash);
    keys.forEach(function(k){ controls[k].value = p.get(k) || ''; });
    query.value = p.get('q') || '';
    var s = p.get('sort') || '';
    sortBy(s.replace(/^-/, ''), s.charAt(0) === '-' ? -1 : 1);
    filter();
  }
  keys.forEach(function(k){ controls[k].addEventListener('change', function(){ filter(); save(); }); });
  query.addEventListener('input', function(){ filter(); save(); });
  document.querySelectorAll('th[data-sort]').forEach(function(th){
    th.addEventListener('click', function(){
      var key = th.getAttribute('data-sort');
      sortBy(key, key === sortKey ? -sortDir : (th.getAttribute('data-num') === '1' ? -1 : 1));
      save();
    });
  });
  document.getElementById('f-reset').addEventListener('click', function(){
    keys.forEach(function(k){ controls[k].value = ''; });
    query.value = ''; sortBy('', 1); filter(); save();
  });
  window.addEventListener('hashchange', function(){
    load();
    if (location.hash.indexOf('=') >= 0) document.getElementById('all').scrollIntoView();
  });
  load();
  filter();
})();
"""
