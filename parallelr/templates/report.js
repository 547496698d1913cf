/* The HTML report's task table: sorted by a click on a heading, filtered by the filter box
   (text in the task, its arguments or its error; "#N" is task number N) and the status boxes,
   shown a page at a time. The rows are the JSON of the task-data block; every cell is written
   with textContent, so nothing from the run is ever read as markup. A click on a timeline bar
   filters the table to its task. No library, nothing loaded. */
(function () {
  "use strict";
  var STATUS_CLASSES = { SUCCESS: "ok", FAILED: "failed", TIMEOUT: "timeout", ERROR: "error",
                         CANCELLED: "cancelled", RUNNING: "running" };
  var POSITION = 0, TASK = 1, ARGUMENTS = 2, STATUS = 3, ERROR = 11;
  var DECIMALS = { 8: 2, 9: 1, 10: 1 }; // duration, memory, CPU
  var CELL_CLASSES = { 1: "task", 2: "arguments", 11: "error" };

  var data = JSON.parse(document.getElementById("task-data").textContent);
  var columns = data.columns;
  var rows = Array.prototype.concat.apply([], data.chunks); // written in chunks of rows
  var pageRows = data.pageRows || 100;
  var withOutput = {}; // task numbers whose output the page shows
  data.withOutput.forEach(function (position) { withOutput[position] = true; });
  var body = document.querySelector("#task-table tbody");
  var headers = Array.prototype.slice.call(document.querySelectorAll("#task-table thead th"));
  var filterBox = document.getElementById("filter");
  var statusBoxes = Array.prototype.slice.call(document.querySelectorAll("#status-filter input[type=checkbox]"));
  var previous = document.getElementById("previous");
  var next = document.getElementById("next");
  var pageInfo = document.getElementById("page-info");
  var shownInfo = document.getElementById("shown");
  var root = commonDirectory(rows); // shown once above the table, left out of the task cells
  var view = { column: POSITION, descending: false, page: 0 };
  var haystacks = null; // lower-case text of each row, made on the first filter
  var shown = rows;

  function commonDirectory(all) {
    if (all.length === 0) { return ""; }
    var prefix = String(all[0][TASK]);
    for (var i = 1; i < all.length && prefix; i += 1) {
      var task = String(all[i][TASK]);
      var length = 0;
      while (length < prefix.length && prefix.charCodeAt(length) === task.charCodeAt(length)) { length += 1; }
      prefix = prefix.slice(0, length);
    }
    return prefix.slice(0, prefix.lastIndexOf("/") + 1); // a whole directory, or nothing
  }

  function text(row, index) {
    var value = row[index];
    if (value === null || value === undefined || value === "") { return "–"; }
    if (DECIMALS.hasOwnProperty(index) && typeof value === "number") { return value.toFixed(DECIMALS[index]); }
    return String(value);
  }

  function compare(a, b) {
    var column = view.column;
    var x = a[column], y = b[column];
    var order = 0;
    if (x === null || x === undefined || x === "") { order = (y === null || y === undefined || y === "") ? 0 : 1; }
    else if (y === null || y === undefined || y === "") { order = -1; }
    else if (x < y) { order = view.descending ? 1 : -1; }
    else if (x > y) { order = view.descending ? -1 : 1; }
    // blanks last either way; ties by task number, so the order is stable
    return order || (a[POSITION] - b[POSITION]);
  }

  function wanted() {
    var statuses = {};
    statusBoxes.forEach(function (box) { statuses[box.value] = box.checked; });
    var needle = filterBox.value.trim().toLowerCase();
    var numbered = /^#\d+$/.test(needle) ? parseInt(needle.slice(1), 10) : null;
    if (needle && numbered === null && haystacks === null) {
      haystacks = rows.map(function (row) {
        return (row[TASK] + "\n" + row[ARGUMENTS] + "\n" + row[ERROR]).toLowerCase();
      });
    }
    var kept = [];
    for (var i = 0; i < rows.length; i += 1) {
      var row = rows[i];
      if (statuses.hasOwnProperty(row[STATUS]) && !statuses[row[STATUS]]) { continue; }
      if (numbered !== null ? row[POSITION] !== numbered : (needle && haystacks[i].indexOf(needle) < 0)) { continue; }
      kept.push(row);
    }
    return kept;
  }

  function cell(row, index) {
    var td = document.createElement("td");
    if (columns[index][1] === "number") { td.className = "number"; }
    if (CELL_CLASSES.hasOwnProperty(index)) { td.className = CELL_CLASSES[index]; }
    if (index === STATUS) {
      var badge = document.createElement("span");
      badge.className = "status " + (STATUS_CLASSES[row[STATUS]] || "other");
      badge.textContent = text(row, index);
      td.appendChild(badge);
    } else if (index === TASK && root.length > 1) {
      td.textContent = String(row[TASK]).slice(root.length);
      td.title = row[TASK];
    } else {
      td.textContent = text(row, index);
    }
    if (index === TASK && withOutput[row[POSITION]] === true) {
      var link = document.createElement("a");
      link.href = "#output-" + Number(row[POSITION]);
      link.className = "output-link";
      link.textContent = "output";
      td.appendChild(link);
    }
    return td;
  }

  function draw() {
    var pages = Math.max(1, Math.ceil(shown.length / pageRows));
    view.page = Math.min(view.page, pages - 1);
    var first = view.page * pageRows;
    var last = Math.min(shown.length, first + pageRows);
    var fragment = document.createDocumentFragment();
    for (var i = first; i < last; i += 1) {
      var tr = document.createElement("tr");
      for (var index = 0; index < columns.length; index += 1) { tr.appendChild(cell(shown[i], index)); }
      fragment.appendChild(tr);
    }
    if (shown.length === 0) {
      var empty = document.createElement("tr");
      var td = document.createElement("td");
      empty.className = "empty";
      td.colSpan = columns.length;
      td.textContent = "No task matches.";
      empty.appendChild(td);
      fragment.appendChild(empty);
    }
    body.textContent = "";
    body.appendChild(fragment);
    pageInfo.textContent = shown.length ? "rows " + (first + 1) + "–" + last + " of " + shown.length
                                        : "no rows";
    shownInfo.textContent = shown.length === rows.length ? rows.length + " task(s)"
                                                         : shown.length + " of " + rows.length + " task(s) match";
    previous.disabled = view.page === 0;
    next.disabled = view.page >= pages - 1;
  }

  function refresh() {
    shown = wanted();
    shown.sort(compare);
    view.page = 0;
    draw();
  }

  headers.forEach(function (th, index) {
    th.querySelector("button").addEventListener("click", function () {
      view.descending = view.column === index ? !view.descending : false;
      view.column = index;
      headers.forEach(function (other) { other.setAttribute("aria-sort", "none"); });
      th.setAttribute("aria-sort", view.descending ? "descending" : "ascending");
      refresh();
    });
  });
  filterBox.addEventListener("input", refresh);
  statusBoxes.forEach(function (box) { box.addEventListener("change", refresh); });
  previous.addEventListener("click", function () { view.page -= 1; draw(); });
  next.addEventListener("click", function () { view.page += 1; draw(); });
  var timeline = document.getElementById("timeline");
  if (timeline) {
    timeline.addEventListener("click", function (event) {
      var position = event.target.getAttribute("data-position");
      if (position === null) { return; }
      filterBox.value = "#" + Number(position);
      refresh();
      document.getElementById("tasks").scrollIntoView();
    });
  }
  if (root.length > 1) { document.getElementById("task-root").textContent = "Tasks in " + root; }
  if (!rows.some(function (row) { return row[ARGUMENTS] !== ""; })) {
    document.getElementById("task-table").classList.add("no-arguments"); // task files without arguments
  }
  headers[POSITION].setAttribute("aria-sort", "ascending");
  refresh();
}());
