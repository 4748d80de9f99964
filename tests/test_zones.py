from qa_bot.zones import ZoneTable, place_of

ZONES = ["侯马经济开发区", "运城经济技术开发区", "沁源县", "祁县经济开发区"]


def table(tmp_path=None, aliases=""):
    alias_file = None
    if tmp_path is not None:
        alias_file = tmp_path / "zones.toml"
        alias_file.write_text(aliases, encoding="utf-8")
    return ZoneTable.build(ZONES, texts=["上党经济技术开发区一行赴沁源经开区考察"],
                           alias_file=alias_file)


def test_place_names_and_derived_short_forms():
    assert place_of("运城经济技术开发区") == "运城"
    assert place_of("沁源县") == "沁源"
    zones = table()
    assert zones.canonical("运城经开区") == "运城经济技术开发区"
    assert zones.canonical("侯马") == "侯马经济开发区"
    assert zones.canonical("侯马开发区") == "侯马经济开发区"
    assert zones.canonical("沁源经开区") == "沁源县"
    assert zones.canonical("太原") is None


def test_find_prefers_the_longest_name_and_reads_traditional():
    zones = table()
    assert zones.find("侯马开发区召开了什么会？") == ["侯马经济开发区"]
    assert zones.find("運城經開區的項目") == ["运城经济技术开发区"]
    assert zones.find("侯马和运城经开区") == ["侯马经济开发区", "运城经济技术开发区"]
    assert zones.find("哪个园区在搞半导体") == []


def test_alias_file_adds_names(tmp_path):
    zones = table(tmp_path, '[aliases]\n"运城经济技术开发区" = ["盐湖经开区"]\n')
    assert zones.canonical("盐湖经开区") == "运城经济技术开发区"
    assert "盐湖经开区" in zones.words()


def test_unknown_zone_mentions_but_not_generic_words_or_zones_in_the_text():
    zones = table()
    assert zones.unknown_mentions("太原经开区今年引进了几家半导体企业？") == ["太原经开区"]
    assert zones.unknown_mentions("朔州开发区和哪家央企签了合作协议？") == ["朔州开发区"]
    assert zones.unknown_mentions("上党经开区的陈华一行去哪里考察学习？") == []
    assert zones.unknown_mentions("侯马开发区负责人要求什么？") == []
    assert zones.unknown_mentions("哪个开发区在搞半导体？") == []
    assert zones.unknown_mentions("对于停工停产的企业，开发区采取了什么办法？") == []
