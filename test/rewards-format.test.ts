import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ACCESS_TAG, ANSWER_TAG, checkTrajectoryFormat, checkTurnFormat, closeTag, INFORMATION_TAG, openTag, parseTurn, SEARCH_TAG, THINK_TAG, TOOL_STOP_STRINGS, TOOL_TAGS } from '../src/rewards/format.ts';

describe('tag constants', () => {
  it('names the protocol tags, tools in priority order', () => {
    expect(TOOL_TAGS).toEqual([SEARCH_TAG, ACCESS_TAG, ANSWER_TAG]);
    expect([SEARCH_TAG, ACCESS_TAG, ANSWER_TAG, THINK_TAG, INFORMATION_TAG]).toEqual(['search', 'access', 'answer', 'think', 'information']);
    expect(TOOL_STOP_STRINGS).toEqual(['</search>', '</access>', '</answer>']);
    expect([openTag('think'), closeTag('think')]).toEqual(['<think>', '</think>']);
  });
});

describe('parseTurn', () => {
  it.each([
    ['I need the capital.\n</think>\n<search> capital of France </search>', 'search', 'capital of France'],
    ['</think>\n<access>https://en.wikipedia.org/wiki/Paris</access>', 'access', 'https://en.wikipedia.org/wiki/Paris'],
    ['</think>\n<answer> Paris </answer>', 'answer', 'Paris'],
    ['<answer>line one\nline two</answer>', 'answer', 'line one\nline two'],
    ['<search>\u3000q\u00a0\x85</search>', 'search', 'q'], // Python's strip(): Unicode whitespace
    ['<search></search>', 'search', ''],
    ['<search>first</search> then <search>second</search>', 'search', 'second'], // last match
  ])('%j → %s %j', (text, kind, arg) => {
    expect(parseTurn(text)).toEqual({ kind, arg, reason: null });
  });

  it('a turn without a tool tag is "none"', () => {
    expect(parseTurn('The page says the tower is 330 m tall.\n</think>')).toEqual({ kind: 'none', arg: null, reason: 'no <search>, <access>, <answer> tag' });
    expect(parseTurn('<searching> is not a tag').kind).toBe('none');
  });

  it.each([
    ['<search>q</search>\n<answer>a</answer>', 'two different tool tags in one turn: <search> and <answer>'],
    ['<answer>a</answer><access>u</access><answer>b</answer>', 'two different tool tags in one turn: <access> and <answer>'],
    ['<search> cut off by max_new_tokens', 'unbalanced tool tags: unclosed <search>'],
    ['query</search>', 'unbalanced tool tags: </search> without <search>'],
    ['<search>q</answer>', 'unbalanced tool tags: </answer> closes <search>'],
    ['<answer><search>q</search></answer>', 'unbalanced tool tags: <search> opened inside <answer>'],
    ['<search>a<search>b</search>', 'unbalanced tool tags: <search> opened inside <search>'],
  ])('%j is invalid: %s', (text, reason) => {
    expect(parseTurn(text)).toEqual({ kind: 'invalid', arg: null, reason });
  });

  it("'asearcher' mode: last match of each tag, first of search > access > answer, never invalid", () => {
    expect(parseTurn('<answer>a</answer>\n<search>q</search>', { mode: 'asearcher' })).toEqual({ kind: 'search', arg: 'q', reason: null });
    expect(parseTurn('<answer>a</answer><access>u1</access><access>u2</access>', { mode: 'asearcher' })).toEqual({ kind: 'access', arg: 'u2', reason: null });
    // Python's non-greedy re: from the first <search> to the first </search>.
    expect(parseTurn('<search>a<search>b</search>', { mode: 'asearcher' })).toEqual({ kind: 'search', arg: 'a<search>b', reason: null });
    expect(parseTurn('<search> cut off', { mode: 'asearcher' }).kind).toBe('none');
  });
});

describe('checkTurnFormat (strict)', () => {
  it.each([
    'Paris is in France.\n</think>\n<answer> Paris </answer>',
    'Let me search.\n</think>\n<search>capital of France</search>',
    'Summary of the page: nothing relevant.\n</think>',
    'I will think more', // a turn cut off mid-thought has no tag problem
    'The assistant professor at MIT</think><answer>Jane Doe</answer>', // "assistant" without a role colon
  ])('accepts %j', (text) => {
    expect(checkTurnFormat(text)).toEqual({ ok: true, reason: null });
  });

  it.each([
    ['</think><search>a</search><search>b</search>', /2 tool calls in one turn \(<search>, <search>\)/],
    ['<search>q</search><answer>a</answer>', /2 tool calls in one turn/],
    ['<search>q', /unbalanced tool tags: unclosed <search>/],
    ['</search><search>', /unbalanced tool tags: <\/search> without <search>/],
    ['</think>\n<information>made-up results</information>', /the model wrote <information>/],
    ['</information>', /the model wrote <\/information>/],
    ['<think>again</think><answer>x</answer>', /the model wrote <think>, but the prompt already opens it/],
    ['a</think>b</think>', /2 × <\/think>; at most one is allowed/],
    ['</think><answer>Paris</answer>\n\nUser: thanks\n\nAssistant: you are welcome', /role leak: the turn contains "Assistant:"/],
    ['</think>\nassistant : <answer>x</answer>', /role leak/],
    ['</think><|im_start|>assistant', /role leak: the turn contains "<\|im_start\|>"/],
  ])('rejects %j', (text, reason) => {
    const v = checkTurnFormat(text);
    expect(v.ok).toBe(false);
    expect(v.reason).toMatch(reason);
  });

  it('promptOpensThink: false lets the model open one <think> of its own, before its </think>', () => {
    const opts = { promptOpensThink: false };
    expect(checkTurnFormat('<think>plan</think><search>q</search>', opts).ok).toBe(true);
    expect(checkTurnFormat('<think>still thinking', opts)).toEqual({ ok: false, reason: 'unclosed <think>' });
    expect(checkTurnFormat('</think><think>', opts)).toEqual({ ok: false, reason: '</think> without a preceding <think>' });
    expect(checkTurnFormat('<think><think>x</think>', opts)).toEqual({ ok: false, reason: '2 × <think>; at most one is allowed' });
  });
});

describe("checkTurnFormat ('asearcher' mode = the released correct_format_fn)", () => {
  const asearcher = { mode: 'asearcher' } as const;
  it.each([
    ['</search><search>', true], // counts balance, order is not checked
    ['<information>x</information>', true], // that rule is commented out in their code
    ['<think>x</think><answer>a</answer>', true],
    ['The assistant professor</think><answer>x</answer>', false], // any "assistant" substring
    ['Google Assistant</think>', false],
    ['<search>q</search><answer>a</answer>', false],
    ['<answer>a', false],
    ['a</think>b</think>', false],
  ])('%j → %s', (text, ok) => {
    expect(checkTurnFormat(text, asearcher).ok).toBe(ok);
  });
});

describe('checkTrajectoryFormat', () => {
  it('passes when every turn passes and names the first bad turn otherwise', () => {
    const good = ['Need data.\n</think>\n<search>q</search>', 'Summary.\n</think>', '</think><answer>a</answer>'];
    expect(checkTrajectoryFormat(good)).toEqual({ ok: true, reason: null });
    expect(checkTrajectoryFormat([...good.slice(0, 2), '<answer>a</answer><answer>b</answer>', 'a</think>b</think>'])).toEqual({
      ok: false,
      reason: 'turn 2: 2 tool calls in one turn (<answer>, <answer>); at most one is allowed',
    });
    expect(checkTrajectoryFormat([])).toEqual({ ok: true, reason: null });
  });
});

describe('properties', () => {
  const piece = fc.constantFrom('<search>', '</search>', '<access>', '</access>', '<answer>', '</answer>', '<think>', '</think>', 'q', ' ', '\n', 'Paris', 'x y');
  const turn = fc.array(piece, { maxLength: 12 }).map((ps) => ps.join(''));

  it('a turn that passes the strict check parses to one action or none, the same as ASearcher would', () => {
    fc.assert(
      fc.property(turn, (text) => {
        if (!checkTurnFormat(text, { promptOpensThink: false }).ok) return;
        const strict = parseTurn(text);
        expect(strict.kind).not.toBe('invalid');
        expect(strict).toEqual(parseTurn(text, { mode: 'asearcher' }));
      }),
      { numRuns: 3000 },
    );
  });

  it('parseTurn names the one tool kind present, "none" when there is none, and says why when invalid', () => {
    fc.assert(
      fc.property(turn, (text) => {
        const p = parseTurn(text);
        const kinds = [...new Set([...text.matchAll(/<\/?(search|access|answer)>/g)].map((m) => m[1]))];
        if (p.kind === 'none') expect(kinds).toEqual([]);
        else if (p.kind !== 'invalid') expect(kinds).toEqual([p.kind]);
        else expect(p.reason).toMatch(kinds.length > 1 ? /^(two different tool tags in one turn|unbalanced tool tags)/ : /^unbalanced tool tags/);
      }),
      { numRuns: 3000 },
    );
  });
});
