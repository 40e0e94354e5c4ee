// Keyboard shortcuts for the console (press ? on any page for the list).
//
// A file served by the console itself, loaded with <script src>: the CSP allows script-src
// 'self' only, so no inline script or handler attribute is needed anywhere.  The pages work
// without it; this only saves keystrokes.  Chromium on Linux keeps Alt+D/E/F for itself, so
// the shortcuts are single keys outside text fields plus Ctrl+Enter / Ctrl+S / F8.
"use strict";
(function () {
  var PROMPT = "[Consultant:";

  function typing(el) {
    if (!el) return false;
    var tag = el.tagName;
    return tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable ||
      (tag === "INPUT" && !/^(button|submit|checkbox|radio|reset)$/i.test(el.type));
  }

  function follow(id) {
    var link = document.getElementById(id);
    if (link) window.location.assign(link.href);
    return !!link;
  }

  function submitWith(buttonId) {
    var button = document.getElementById(buttonId);
    if (!button || !button.form) return false;
    if (button.form.requestSubmit) button.form.requestSubmit(button);
    else button.click();
    return true;
  }

  // Select the next "[Consultant: ...]" prompt after the caret (wrapping round), scroll the
  // editor to it and focus it, so typing replaces the prompt.
  function selectPrompt(editor, from) {
    var text = editor.value;
    var start = text.indexOf(PROMPT, from);
    if (start < 0) start = text.indexOf(PROMPT);
    if (start < 0) return false;
    var end = text.indexOf("]", start);
    end = end < 0 ? text.length : end + 1;
    editor.focus();
    editor.setSelectionRange(start, end);
    var line = text.slice(0, start).split("\n").length - 1;
    var height = parseFloat(window.getComputedStyle(editor).lineHeight) || 20;
    editor.scrollTop = Math.max(0, (line - 3) * height);
    return true;
  }

  function focusEditor(editor) {
    if (!selectPrompt(editor, 0)) {
      editor.focus();
      editor.setSelectionRange(0, 0);
      editor.scrollTop = 0;
    }
  }

  // --- the queue: j/k move a highlighted row, Enter opens it -----------------------------
  var rows = Array.prototype.slice.call(document.querySelectorAll("tr.row[data-case]"));
  var current = rows.length ? 0 : -1;
  function highlight(index) {
    if (!rows.length) return;
    current = Math.max(0, Math.min(rows.length - 1, index));
    rows.forEach(function (row, i) { row.classList.toggle("selected", i === current); });
    rows[current].scrollIntoView({block: "nearest"});
  }
  if (rows.length) highlight(0);

  var editor = document.getElementById("draft-text");
  var help = document.getElementById("shortcuts");
  if (editor && !document.getElementById("stale")) focusEditor(editor);

  // --- macros: the team's snippets, filled in for this case by the server (in <template>s,
  // inert), inserted at the editor's caret as plain text (setRangeText: never parsed as HTML).
  var pick = document.getElementById("macro-pick");
  var caret = null;
  if (editor) {
    editor.addEventListener("blur", function () {
      caret = [editor.selectionStart, editor.selectionEnd];
    });
  }
  function insertMacro() {
    var source = pick && document.getElementById("macro-" + pick.value);
    if (!source || !editor) return;
    var text = source.content ? source.content.textContent : source.textContent;
    var at = caret || [editor.selectionStart, editor.selectionEnd];
    editor.focus();
    editor.setRangeText(text, at[0], at[1], "end");
    caret = null;
    editor.dispatchEvent(new Event("input", {bubbles: true}));
  }
  if (pick) {
    document.getElementById("insert-macro").addEventListener("click", insertMacro);
    pick.addEventListener("keydown", function (event) {
      if (event.key === "Enter") { event.preventDefault(); insertMacro(); }
    });
  }

  // --- the queue: x ticks the highlighted row for a bulk action --------------------------
  function toggleRow() {
    var box = rows.length && current >= 0 && rows[current].querySelector("input.pick");
    if (box) box.checked = !box.checked;
    return !!box;
  }

  document.addEventListener("keydown", function (event) {
    var ctrl = event.ctrlKey || event.metaKey;
    if (ctrl && event.key === "Enter") {
      if (submitWith("approve")) event.preventDefault();
      return;
    }
    if (ctrl && (event.key === "s" || event.key === "S") && !event.shiftKey && !event.altKey) {
      if (submitWith("save")) event.preventDefault();
      return;
    }
    if (event.key === "F9" && pick) {
      event.preventDefault();
      if (document.activeElement === editor) caret = [editor.selectionStart, editor.selectionEnd];
      pick.focus();
      return;
    }
    if (event.key === "F8" && editor) {
      event.preventDefault();
      var from = document.activeElement === editor ? editor.selectionEnd : 0;
      selectPrompt(editor, from);
      return;
    }
    if (event.key === "Escape" && typing(document.activeElement)) {
      document.activeElement.blur();
      return;
    }
    if (ctrl || event.altKey || typing(document.activeElement)) return;
    switch (event.key) {
      case "?":
        if (help) { help.open ? help.close() : help.showModal(); }
        break;
      case "j": case "n":
        if (rows.length) highlight(current + 1); else follow("next-case");
        break;
      case "k": case "p":
        if (rows.length) highlight(current - 1); else follow("prev-case");
        break;
      case "Enter":
        if (rows.length && current >= 0 && document.activeElement === document.body) {
          var link = rows[current].querySelector("a");
          if (link) window.location.assign(link.href);
        } else return;
        break;
      case "x":
        if (!toggleRow()) return;
        break;
      case "e":
        if (!editor) return;
        focusEditor(editor);
        break;
      case "/":
        var search = document.querySelector("input[type=search]");
        if (!search) return;
        search.focus();
        break;
      default:
        return;
    }
    event.preventDefault();
  });
})();
